"""Export a trained checkpoint (or a detector's embedding front-end) to one file + its JSON,
then check the file against PyTorch with the runtime it names before reporting success."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aad.checkpoints import aad_version, data_config, load_module
from aad.export.classifier_graph import ClassifierGraph
from aad.export.graph import EmbeddingGraph, ScoringGraph, class_path
from aad.export.onnx import OPSET, write_onnx
from aad.export.runtime import ExportedModel
from aad.export.sidecar import FORMATS, ExportMeta
from aad.export.torchscript import write_torchscript
from aad.features.extractor import FeatureExtractor
from aad.features.pooling import clip_embedding
from aad.models.base import AnomalyModule

CLASSIFIER = "aad.models.classifier.lightning_model.MachineIDClassifier"
PARITY_RTOL = 1e-4
"""Exported vs PyTorch scores: ``|a - b| <= PARITY_RTOL * max(|b|) + 1e-6`` (float32)."""


class ExportError(ValueError):
    """The written file does not reproduce PyTorch's scores (the message gives the gap)."""


@dataclass
class ExportResult:
    model_path: Path
    meta_path: Path
    meta: ExportMeta


def probe_signal(rows: int, samples: int, sample_rate: int, seed: int = 0) -> np.ndarray:
    """Deterministic machine-like test PCM: harmonics + noise + a click, float32 in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / sample_rate
    out = np.empty((rows, samples), dtype=np.float32)
    for row in range(rows):
        base = 50.0 + 37.0 * row
        tone = sum(np.sin(2 * np.pi * base * h * t) / h for h in range(1, 6))
        signal = 0.05 * tone + 0.02 * rng.standard_normal(samples)
        signal[samples // 3 : samples // 3 + 200] += 0.3
        out[row] = signal
    return out


def _write(
    graph: nn.Module,
    fmt: str,
    path: Path,
    example: torch.Tensor,
    need: int,
    outputs: tuple[str, ...],
    opset: int,
) -> None:
    if fmt == "onnx":
        write_onnx(graph, path, example, need, outputs, opset)
    elif fmt == "torchscript":
        write_torchscript(graph, path, example)
    else:
        raise ValueError(f"format {fmt!r} not in {tuple(FORMATS)}")


def _check_parity(reference: Any, exported: ExportedModel, lengths: list[int]) -> dict[str, Any]:
    """Run both on the probe at each length; raise :class:`ExportError` past the tolerance."""
    worst = 0.0
    for samples in lengths:
        pcm = probe_signal(2, samples, exported.sample_rate)
        expected = reference(torch.from_numpy(pcm))
        got = exported.run(pcm)
        for name, want, have in zip(("clip", "frame"), expected, got, strict=False):
            want = want.detach().cpu().numpy()
            if want.shape != have.shape:
                raise ExportError(
                    f"{exported.path}: {name} output shape {have.shape} at "
                    f"{samples} samples, PyTorch gives {want.shape}"
                )
            gap = float(np.max(np.abs(want - have)))
            allowed = PARITY_RTOL * float(np.max(np.abs(want))) + 1e-6
            if not gap <= allowed:
                raise ExportError(
                    f"{exported.path}: {name} outputs differ from PyTorch by {gap:.3g} at "
                    f"{samples} samples (allowed {allowed:.3g}): the export is not faithful"
                )
            worst = max(worst, gap / max(float(np.max(np.abs(want))), 1e-12))
    return {"lengths": lengths, "max_relative_gap": worst, "rtol": PARITY_RTOL}


def _parity_lengths(clip_samples: int, need: int, hop: int) -> list[int]:
    other = max(need, clip_samples // 2 + hop // 3)
    return [clip_samples, other] if other != clip_samples else [clip_samples]


def export_module(
    module: AnomalyModule,
    fmt: str,
    out: str | Path,
    *,
    clip_seconds: float,
    name: str = "model",
    machine_type: str | None = None,
    machine_id: str | None = None,
    source: str = "",
    opset: int = OPSET,
) -> ExportResult:
    """Write ``out/<name>.{onnx,pt}`` and ``out/<name>.json`` for a trained module. For the
    machine-id classifier ``machine_id`` is the id the file scores (None: the nearest id)."""
    module = module.cpu().eval()
    graph: ScoringGraph | ClassifierGraph
    if class_path(module) == CLASSIFIER:  # scores one id (baked in), or the nearest id
        graph = ClassifierGraph(module, machine_id).eval()
    else:
        graph = ScoringGraph(module).eval()
    rate, need = module.sample_rate, graph.min_samples
    clip_samples = int(round(clip_seconds * rate))
    if clip_samples < need:
        raise ValueError(
            f"clip_seconds={clip_seconds} is shorter than the model needs ({need} samples)"
        )
    model_path, example = _prepare(out, name, fmt, clip_samples, rate)
    _write(graph, fmt, model_path, example, need, ("clip_scores", "frame_scores"), opset)
    threshold = float(module.threshold)
    meta = _meta(
        fmt, model_path, "scores", rate, clip_seconds, need, source, opset,
        feature_signature=module.feature_signature,
        feature_config=asdict(module.feature_config),
        threshold=threshold if math.isfinite(threshold) else None,
        score=module.score_name,
        top_k=int(module.top_k) if module.score_name == "topk" else None,
        model_class=class_path(module),
        machine_type=machine_type,
        machine_id=machine_id,
        frame_step_s=graph.frame_step / rate,
        frame_offset_s=graph.frame_offset / rate,
        inputs={
            "waveform": f"float32 (batch, samples): mono PCM in [-1, 1] at {rate} Hz, "
            f"samples >= {need}"
        },
        outputs={
            "clip_scores": "float32 (batch,): higher = more anomalous; > threshold = anomaly",
            "frame_scores": "float32 (batch, frames): per-frame anomaly scores",
        },
    )  # fmt: skip

    def reference(waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = module.score(graph.reference_batch(waveform))  # THE scoring path
        return output.clip_scores, output.frame_scores

    return _finish(meta, model_path, out, name, reference, clip_samples, need, rate)


def _prepare(
    out: str | Path, name: str, fmt: str, clip_samples: int, rate: int
) -> tuple[Path, torch.Tensor]:
    """The output folder (created), the model file's path and the example input to trace."""
    Path(out).mkdir(parents=True, exist_ok=True)
    example = torch.from_numpy(probe_signal(2, clip_samples, rate, seed=1))
    return Path(out) / f"{name}{FORMATS.get(fmt, '')}", example


def _meta(
    fmt: str,
    model_path: Path,
    kind: str,
    rate: int,
    clip_seconds: float,
    need: int,
    source: str,
    opset: int,
    **fields: Any,
) -> ExportMeta:
    """The sidecar fields every export records, plus ``fields`` (the kind's own)."""
    return ExportMeta(
        format=fmt,
        file=model_path.name,
        kind=kind,
        sample_rate=rate,
        clip_seconds=float(clip_seconds),
        min_samples=need,
        aad_version=aad_version(),
        source=source,
        opset=opset if fmt == "onnx" else None,
        **fields,
    )


def _finish(
    meta: ExportMeta,
    model_path: Path,
    out: str | Path,
    name: str,
    reference: Any,
    clip_samples: int,
    need: int,
    rate: int,
) -> ExportResult:
    """Check the written file against ``reference`` (PyTorch), then write its sidecar."""
    exported = ExportedModel(meta, model_path, threads=1)
    with torch.no_grad():
        meta.parity = _check_parity(reference, exported, _parity_lengths(clip_samples, need, rate))
    return ExportResult(model_path, meta.write(Path(out) / f"{name}.json"), meta)


def export_checkpoint(
    ckpt: str | Path,
    fmt: str,
    out: str | Path,
    *,
    name: str = "model",
    clip_seconds: float | None = None,
    machine_id: str | None = None,
    opset: int = OPSET,
) -> ExportResult:
    """Load ``ckpt`` with ``aad.checkpoints.load_module`` and export it (see export_module);
    ``machine_id``: the id a machine-id classifier scores (default: the nearest id)."""
    module, checkpoint = load_module(ckpt)
    data = data_config(checkpoint, {})
    seconds = clip_seconds or data.get("clip_seconds")
    if not seconds:
        raise ValueError(
            f"{ckpt} was trained on whole clips of unrecorded length (data.clip_seconds null): "
            "give the clip length the model scores (--clip_seconds)"
        )
    return export_module(
        module,
        fmt,
        out,
        clip_seconds=float(seconds),
        name=name,
        machine_type=data.get("machine_type"),
        machine_id=machine_id or data.get("machine_id"),
        source=str(ckpt),
        opset=opset,
    )


def export_embedding(
    extractor: FeatureExtractor,
    stats: list[str],
    fmt: str,
    out: str | Path,
    *,
    clip_seconds: float,
    name: str = "embedding",
    detector: dict[str, Any] | None = None,
    signature: str = "",
    opset: int = OPSET,
) -> ExportResult:
    """Write a pooled-embedding front-end (PCM -> ``(batch, E)``) and its JSON."""
    graph = EmbeddingGraph(extractor.cpu().eval(), stats).eval()
    rate = int(extractor.config.sample_rate)
    need = extractor.min_samples()
    clip_samples = int(round(clip_seconds * rate))
    model_path, example = _prepare(out, name, fmt, clip_samples, rate)
    _write(graph, fmt, model_path, example, need, ("embedding",), opset)
    width = extractor.embedding_dim(clip_samples, "pooled", stats)
    meta = _meta(
        fmt, model_path, "embedding", rate, clip_seconds, need,
        str((detector or {}).get("file", "")), opset,
        feature_signature=signature,
        feature_config=asdict(extractor.config),
        threshold=(detector or {}).get("threshold"),
        inputs={"waveform": f"float32 (batch, samples): mono PCM in [-1, 1] at {rate} Hz"},
        outputs={"embedding": f"float32 (batch, {width}): {'+'.join(stats)} of each part"},
        detector=detector,
    )  # fmt: skip

    def reference(waveform: torch.Tensor) -> tuple[torch.Tensor]:
        return (clip_embedding(extractor.forward_parts(waveform), "pooled", stats),)

    return _finish(meta, model_path, out, name, reference, clip_samples, need, rate)
