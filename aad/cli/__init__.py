"""Command-line entry points, one module per command: ``train`` (train.py), ``evaluate``
(evaluate.py), ``predict``, ``explain`` and ``compare`` (``python -m aad.compare``)."""

from aad.cli.evaluate import main as evaluate_main
from aad.cli.train import main

__all__ = ["evaluate_main", "main"]
