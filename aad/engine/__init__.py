"""The one engine behind ``train.py``, ``evaluate.py`` and ``compare``.

Groups of clips (:mod:`aad.data.splits`) x methods (:mod:`aad.engine.methods`: Lightning
models fitted by :func:`aad.engine.fit.fit_model`, detectors on clip embeddings) ->
one per-clip score table (:func:`aad.engine.results.clip_table`) -> one metrics path
(:mod:`aad.metrics`, :mod:`aad.report.tables`). :func:`aad.engine.runner.run_groups` goes
on past a failing method or group and reports each failure as a row.
"""

from aad.engine.fit import fit_model
from aad.engine.methods import DetectorMethod, Method, MethodSpec, ModelMethod
from aad.engine.results import SCORE_COLUMNS, clip_table, failure_row
from aad.engine.runner import RunResult, run_groups

__all__ = [
    "SCORE_COLUMNS",
    "DetectorMethod",
    "Method",
    "MethodSpec",
    "ModelMethod",
    "RunResult",
    "clip_table",
    "failure_row",
    "fit_model",
    "run_groups",
]
