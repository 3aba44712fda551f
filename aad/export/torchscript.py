"""Write a graph to one TorchScript file (``torch.jit.trace``; sizes are traced, so one file
scores any batch and clip length; the exporter checks that on a second length)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn


def write_torchscript(graph: nn.Module, path: str | Path, example: torch.Tensor) -> Path:
    """Trace ``graph`` on ``example`` ``(batch, samples)`` and save it to ``path``."""
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        # jit.trace is deprecated in torch 2.11 but still the one TorchScript writer; the
        # tracer warns about python-side constants (filter widths) that do not vary
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(graph, (example,), check_trace=False)
    traced.save(str(path))
    return path
