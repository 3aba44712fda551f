"""Score raw PCM with an exported file (ONNX or TorchScript) or, the same way, a checkpoint.

The ONNX path needs only numpy and onnxruntime (no torch), so a listening box installs
``numpy onnxruntime`` and copies this file's package; TorchScript needs torch.

    model = load_exported("export/model.json")        # or model.onnx / model.pt / the folder
    scores = model.score(pcm)                          # (batch, samples) or (samples,)
    scores.clip_scores, scores.frame_scores, model.decide(scores.clip_scores)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from aad.export.sidecar import ExportMeta, find_meta, read_meta

PCM16_SCALE = 32768.0


@dataclass
class Scores:
    """Clip scores ``(B,)`` and per-frame scores ``(B, T)``, float32 numpy."""

    clip_scores: np.ndarray
    frame_scores: np.ndarray


class Scorer(Protocol):
    """What ``watch`` needs from an exported model or a checkpoint."""

    sample_rate: int
    clip_samples: int
    min_samples: int
    threshold: float | None
    label: str

    def score(self, waveform: Any) -> Scores: ...


def prepare_waveform(waveform: Any, min_samples: int = 1) -> np.ndarray:
    """``(S,)`` or ``(B, S)`` PCM -> C-contiguous float32 ``(B, S)``.

    int16 is divided by 32768; float64/float16 are cast; other dtypes raise ``TypeError``;
    NaN/Inf rows and clips shorter than ``min_samples`` raise ``ValueError``.
    """
    array = np.asarray(waveform)
    if array.ndim == 1:
        array = array[None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"waveform must be (batch, samples) or (samples,), got {array.shape}")
    if array.dtype == np.int16:
        array = array.astype(np.float32) / PCM16_SCALE
    elif array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    else:
        raise TypeError(f"waveform dtype {array.dtype} not supported: float in [-1, 1] or int16")
    finite = np.isfinite(array).all(axis=1)
    if not finite.all():
        raise ValueError(f"waveform has NaN/Inf samples in batch rows {np.where(~finite)[0]}")
    if array.shape[1] < min_samples:
        raise ValueError(
            f"clip of {array.shape[1]} samples is shorter than the {min_samples} samples this "
            "model scores"
        )
    return np.ascontiguousarray(array)


def decide(scores: np.ndarray, threshold: float | None) -> np.ndarray:
    """1 = anomaly (score above ``threshold``), 0 = normal, -1 = no threshold (n/a)."""
    scores = np.asarray(scores, dtype=np.float64)
    if threshold is None:
        return np.full(scores.shape, -1, dtype=np.int64)
    return (scores > threshold).astype(np.int64)


class ExportedModel:
    """An exported file and its JSON: ``score`` (kind ``scores``) or ``embed`` (``embedding``).

    ``threads``: intra-op threads of the runtime (``None``: its default; TorchScript uses
    ``torch.set_num_threads`` of the process).
    """

    def __init__(self, meta: ExportMeta, model_path: Path, threads: int | None = None) -> None:
        self.meta = meta
        self.path = Path(model_path)
        if not self.path.is_file():
            raise FileNotFoundError(f"exported model file not found: {self.path}")
        self.sample_rate = int(meta.sample_rate)
        self.clip_samples = meta.clip_samples
        self.min_samples = int(meta.min_samples)
        self.threshold = meta.threshold
        self.label = str(self.path)
        self._run = _onnx_runner(self.path, threads) if meta.format == "onnx" else None
        if self._run is None:
            self._run = _torchscript_runner(self.path)

    @classmethod
    def load(cls, path: str | Path, threads: int | None = None) -> ExportedModel:
        """From the JSON, the model file beside it, or their folder."""
        meta_path = find_meta(path)
        meta = read_meta(meta_path)
        return cls(meta, meta_path.parent / meta.file, threads)

    def run(self, waveform: Any) -> list[np.ndarray]:
        """Raw outputs of the file for a checked ``(B, S)`` float32 batch."""
        return self._run(prepare_waveform(waveform, self.min_samples))

    def score(self, waveform: Any) -> Scores:
        """Clip and frame scores of PCM at :attr:`sample_rate`."""
        if self.meta.kind != "scores":
            detector = (self.meta.detector or {}).get("class_path", "the detector")
            raise ValueError(
                f"{self.label} computes clip embeddings only ({detector} is not in the file): "
                "use embed() and score the rows with the detector's .npz"
            )
        clip_scores, frame_scores = self.run(waveform)
        return Scores(np.asarray(clip_scores), np.asarray(frame_scores))

    def embed(self, waveform: Any) -> np.ndarray:
        """``(B, E)`` clip embeddings (kind ``embedding``)."""
        if self.meta.kind != "embedding":
            raise ValueError(f"{self.label} computes scores, not embeddings")
        return np.asarray(self.run(waveform)[0])

    def decide(self, clip_scores: np.ndarray) -> np.ndarray:
        return decide(clip_scores, self.threshold)


def _onnx_runner(path: Path, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ImportError(
            f"scoring {path} needs onnxruntime ({error}): pip install 'aad[deploy]'"
        ) from None
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> list[np.ndarray]:
        return session.run(None, {name: batch})

    return run


def _torchscript_runner(path: Path) -> Any:
    import torch

    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            outputs = module(torch.from_numpy(batch))
        outputs = outputs if isinstance(outputs, tuple | list) else (outputs,)
        return [output.numpy() for output in outputs]

    return run


class CheckpointScorer:
    """A checkpoint behind the :class:`Scorer` interface (``AnomalyModule.score``)."""

    def __init__(self, path: str | Path, clip_seconds: float | None = None) -> None:
        import torch

        from aad.checkpoints import data_config, load_module

        self._torch = torch
        self.module, checkpoint = load_module(path)
        self.sample_rate = self.module.sample_rate
        seconds = clip_seconds or data_config(checkpoint, {}).get("clip_seconds")
        if not seconds:
            raise ValueError(
                f"{path} was trained on whole clips of unrecorded length (data.clip_seconds "
                "null): give the window length (watch --window_seconds)"
            )
        self.clip_samples = int(round(float(seconds) * self.sample_rate))
        self.min_samples = self.module.features.min_samples()
        threshold = float(self.module.threshold)
        self.threshold = threshold if np.isfinite(threshold) else None
        self.label = str(path)

    def score(self, waveform: Any) -> Scores:
        batch = self._torch.from_numpy(prepare_waveform(waveform, self.min_samples))
        output = self.module.score({"waveform": batch.to(self.module.device)})
        return Scores(output.clip_scores.cpu().numpy(), output.frame_scores.cpu().numpy())

    def decide(self, clip_scores: np.ndarray) -> np.ndarray:
        return decide(clip_scores, self.threshold)


def load_scorer(
    path: str | Path, threads: int | None = None, clip_seconds: float | None = None
) -> ExportedModel | CheckpointScorer:
    """An export (JSON, ``.onnx``, ``.pt`` or its folder) or a checkpoint (``.ckpt`` or run
    folder) as a :class:`Scorer`."""
    path = Path(path)
    is_export = path.suffix in (".json", ".onnx", ".pt") or (
        path.is_dir() and any(path.glob("*.json")) and not any(path.rglob("*.ckpt"))
    )
    if is_export:
        model = ExportedModel.load(path, threads)
        if clip_seconds:
            model.clip_samples = int(round(clip_seconds * model.sample_rate))
        return model
    from aad.checkpoints import resolve_checkpoints

    (checkpoint, *_) = resolve_checkpoints([str(path)])
    return CheckpointScorer(checkpoint, clip_seconds)
