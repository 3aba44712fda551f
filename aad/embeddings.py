"""Pooled clip embeddings for the classical detectors, batched on the device and cached.

Two sources:

* ``source="features"``: the feature front-end (LMFE / MFCC / CENS parts), each part
  pooled over its own frames by :func:`aad.features.clip_embedding` (``mode="pooled"`` with
  ``stats`` such as mean and std, or ``mode="flatten"``), parts concatenated.
* ``source="latent"``: a trained reconstruction model's latent code, ``module.encode`` of
  its normalised features (pooled over time with ``stats`` when it returns ``(B, T, L)``).

Embeddings are cached as ``.npy`` (returned memory-mapped) under ``cache_dir``, keyed by
the feature signature, the embedding parameters and every clip's path, size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from aad.data.audio import clip_num_samples
from aad.data.dataset import ClipDataset
from aad.data.manifest import ClipRecord
from aad.features import FeatureConfig, FeatureExtractor, clip_embedding

CACHE_VERSION = 1
SOURCES = ("features", "latent")
MODES = ("pooled", "flatten")
DEFAULT_FEATURES: dict[str, Any] = {
    "sample_rate": 16000,
    "features": ["rms", "centroid", "bandwidth", "rolloff", "flatness", "contrast", "zcr"],
    "stft": {"n_fft": 1024, "hop_length": 512},
    "flatness": {"log": "db"},
}
"""The clip embedding's default front-end: frame level and spectral shape (13 values per
frame; with mean and std, 26 per clip). Chosen on the real sets, not on synthetic sounds
(protocol P1 mean AUC 0.700 with Mahalanobis, against 0.613 for log-mel + MFCC + CENS and
0.658 for PyOD's 74 librosa features + IForest): docs/detectors.md, "Choosing the default"."""


@dataclass
class EmbeddingConfig:
    """How clips become embedding rows for the detectors: the one home of these defaults.

    ``features``: a (partial) :class:`~aad.features.FeatureConfig` dict; ``mode``: ``pooled``
    (``stats`` over each part's frames) or ``flatten`` (every frame); ``device``: where the
    features run (``auto`` = cuda when available); ``cache_dir``: null disables the cache.
    """

    features: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_FEATURES))
    mode: str = "pooled"
    stats: list[str] = field(default_factory=lambda: ["mean", "std"])
    batch_size: int = 32
    device: str = "auto"
    cache_dir: str | None = ".cache/aad"
    num_workers: int = 0

    def __post_init__(self) -> None:
        FeatureConfig.from_dict(self.features)  # raises for unknown or bad feature settings
        if self.mode not in MODES:
            raise ValueError(f"embedding.mode must be one of {MODES}, got {self.mode!r}")
        from aad.features.pooling import STATS

        unknown = [s for s in self.stats if s not in STATS]
        if self.mode == "pooled" and (not self.stats or unknown):
            raise ValueError(
                f"embedding.stats must be a non-empty list of {STATS}, got {self.stats}"
            )
        if self.batch_size < 1 or self.num_workers < 0:
            raise ValueError("embedding.batch_size must be >= 1 and num_workers >= 0")

    def merged(self, overrides: dict[str, Any] | None) -> EmbeddingConfig:
        """This config with a method's overrides (whole fields replaced, e.g. ``features``)."""
        if not overrides:
            return self
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise ValueError(f"unknown embedding settings {unknown}")
        return replace(self, **overrides)


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/``None`` -> cuda when available, else cpu."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def embedding_signature(
    feature_config: FeatureConfig | dict[str, Any],
    mode: str = "pooled",
    stats: Sequence[str] = ("mean", "std"),
    source: str = "features",
) -> str:
    """What the embedding depends on besides the clips: features + pooling (12 hex chars).

    Detectors record it at fit (``feature_signature``) and refuse other signatures.
    """
    config = FeatureConfig.from_dict(feature_config)
    payload = json.dumps([CACHE_VERSION, config.signature(), mode, list(stats), source])
    return f"{config.signature()}-{hashlib.sha256(payload.encode()).hexdigest()[:8]}"


def _cache_key(records: Sequence[ClipRecord], params: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    for record in records:
        stat = os.stat(record.path)
        digest.update(f"{record.path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:24]


def _module_fingerprint(module: torch.nn.Module) -> str:
    """Class, hyperparameters (e.g. an LSTM-AE's ``window``, which changes ``encode`` but no
    weight shape) and every weight and buffer of ``module``."""
    digest = hashlib.sha256(type(module).__qualname__.encode())
    hparams = dict(getattr(module, "hparams", None) or {})
    digest.update(json.dumps(hparams, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def compute_embeddings(
    records: Sequence[ClipRecord],
    feature_config: FeatureConfig | dict[str, Any] | None = None,
    mode: str = "pooled",
    stats: Sequence[str] = ("mean", "std"),
    batch_size: int = 32,
    device: str | torch.device | None = "auto",
    cache_dir: str | Path | None = ".cache/aad",
    *,
    source: str = "features",
    module: Any = None,
    channel: int | str = 0,
    num_samples: int | None = None,
    num_workers: int = 0,
    progress: bool = True,
) -> np.ndarray:
    """Embeddings ``(N, E)`` float32 of ``records`` in order.

    ``num_samples=None`` uses the first clip's length (every clip is padded/cropped to it).
    ``source="latent"`` needs ``module`` (an :class:`aad.models.base.AnomalyModule`); its
    own feature configuration is used and ``feature_config`` is ignored.
    ``cache_dir=None`` disables the cache.
    """
    if source not in SOURCES:
        raise ValueError(f"embedding source must be one of {SOURCES}, got {source!r}")
    if not records:
        raise ValueError("compute_embeddings got no clips")
    if source == "latent":
        if module is None:
            raise ValueError("source='latent' needs a trained module with encode()")
        config = module.feature_config
    else:
        config = FeatureConfig.from_dict(feature_config or {})
    sample_rate = int(config.sample_rate)
    if num_samples is None:
        num_samples = clip_num_samples(records[0].path, sample_rate)
    params: dict[str, Any] = {
        "version": CACHE_VERSION,
        "signature": embedding_signature(config, mode, stats, source),
        "channel": channel,
        "num_samples": num_samples,
    }
    if source == "latent":
        params["module"] = _module_fingerprint(module)
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / "embeddings" / f"{_cache_key(records, params)}.npy"
        cached = _read_cache(cache_path, len(records))
        if cached is not None:
            return cached

    embeddings = _compute(
        records,
        config,
        mode,
        stats,
        batch_size,
        resolve_device(device),
        source,
        module,
        channel,
        num_samples,
        num_workers,
        progress,
    )
    if cache_path is None:
        return embeddings
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    temporary = cache_path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(temporary, embeddings)
    os.replace(temporary, cache_path)
    return np.load(cache_path, mmap_mode="r")


def _read_cache(path: Path, rows: int) -> np.ndarray | None:
    """A cached embedding matrix, or None; a corrupt entry is named, deleted and recomputed."""
    if not path.exists():
        return None
    try:
        cached = np.load(path, mmap_mode="r", allow_pickle=False)
        if cached.ndim != 2 or cached.shape[0] != rows or not np.isfinite(cached).all():
            raise ValueError(f"shape {cached.shape} or non-finite values, expected {rows} rows")
        return cached
    except (OSError, ValueError, EOFError) as error:
        warnings.warn(f"corrupt embedding cache entry {path} ({error}): recomputing", stacklevel=3)
        path.unlink(missing_ok=True)
        return None


@torch.no_grad()
def _compute(
    records: Sequence[ClipRecord],
    config: FeatureConfig,
    mode: str,
    stats: Sequence[str],
    batch_size: int,
    device: torch.device,
    source: str,
    module: Any,
    channel: int | str,
    num_samples: int,
    num_workers: int,
    progress: bool,
) -> np.ndarray:
    dataset = ClipDataset(records, int(config.sample_rate), num_samples, channel)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    if source == "latent":
        was_training = module.training
        original_device = next(module.parameters()).device
        module.eval().to(device)
    else:
        extractor = FeatureExtractor(config).to(device).eval()
    batches: list[np.ndarray] = []
    iterator: Any = loader
    if progress and len(loader) > 1:
        from tqdm.auto import tqdm

        iterator = tqdm(
            loader, desc=f"embeddings ({source})", unit="batch", leave=False, disable=None
        )  # no bar when the output is not a terminal
    try:
        for batch_of_clips in iterator:
            waveform = batch_of_clips["waveform"].to(device)
            if source == "latent":
                latent = module.encode(module.prepare_features(waveform))
                if latent.ndim == 3:
                    latent = clip_embedding(latent, mode=mode, stats=tuple(stats))
                batch = latent
            else:
                batch = clip_embedding(
                    extractor.forward_parts(waveform), mode=mode, stats=tuple(stats)
                )
            batches.append(batch.float().cpu().numpy())
    finally:
        if source == "latent":
            module.to(original_device).train(was_training)
    return np.ascontiguousarray(np.concatenate(batches), dtype=np.float32)
