"""Deploy a trained detector: one file (ONNX or TorchScript) from raw PCM to scores, a JSON
beside it, a runtime that scores with either, and the live sources ``watch`` reads.

``aad.export.runtime``, ``.sidecar`` and ``.stream`` need numpy only (plus onnxruntime for
ONNX files); the writers (``export_checkpoint``, ``export_module``, ``build_graph``) need torch
and are imported on first use.

    from aad.export import export_checkpoint, load_exported
    result = export_checkpoint("best.ckpt", "onnx", "export/")
    model = load_exported(result.meta_path)
    model.score(pcm).clip_scores
"""

from __future__ import annotations

from typing import Any

from aad.export.runtime import CheckpointScorer, ExportedModel, Scores, load_scorer
from aad.export.sidecar import ExportMeta, read_meta

_LAZY = {
    "export_checkpoint": "aad.export.exporter",
    "export_module": "aad.export.exporter",
    "export_embedding": "aad.export.exporter",
    "ExportError": "aad.export.exporter",
    "ExportResult": "aad.export.exporter",
    "build_graph": "aad.export.graph",
    "NotExportableError": "aad.export.graph",
    "ScoringGraph": "aad.export.graph",
}


def load_exported(path: Any, threads: int | None = None) -> ExportedModel:
    """An exported model from its JSON, its ``.onnx``/``.pt`` file or their folder."""
    return ExportedModel.load(path, threads)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aad.export' has no attribute {name!r}")


__all__ = [
    "CheckpointScorer",
    "ExportMeta",
    "ExportedModel",
    "Scores",
    "load_exported",
    "load_scorer",
    "read_meta",
    *_LAZY,
]
