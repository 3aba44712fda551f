"""THE scoring path of trained models: frame scores -> clip scores, the same for validation,
test, ``evaluate.py``, ``predict``, ``--explain`` and ``compare``.

A model turns a batch into per-frame scores (``AnomalyModule.frame_scores``); this module
reduces them to one score per clip (:func:`pool_frames`: the mean, or the mean of the top-k
frames), holds the statistics of the ``mahalanobis`` score (:class:`ErrorCovariance`), and
scores whole data loaders (:func:`score_loader`). It never imports the model classes.
Scores are float32 with autocast off, so bf16 training does not change them; higher = more
anomalous.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

SCORES = ("mean", "topk", "mahalanobis")
"""``mean``: mean frame reconstruction error (the DCASE 2020 baseline); ``topk``: mean of the
``top_k`` largest frame errors; ``mahalanobis``: mean over frames of the Mahalanobis distance of
the frame's error vector under the normal errors' covariance, the minimum over the source and
target domains (the DCASE 2023 baseline's "selective Mahalanobis")."""


@dataclass
class ScoreOutput:
    """Clip scores ``(B,)`` and the per-frame scores ``(B, T)`` they pool."""

    clip_scores: torch.Tensor
    frame_scores: torch.Tensor


class Scorer(Protocol):
    """What :func:`score_loader` needs: ``AnomalyModule`` satisfies it."""

    training: bool

    def score(self, batch: dict[str, Any]) -> ScoreOutput: ...

    def train(self, mode: bool = True) -> Any: ...


def pool_frames(frame_scores: torch.Tensor, score: str, top_k: int) -> torch.Tensor:
    """``(B, T)`` frame scores -> ``(B,)`` clip scores (``topk``: mean of the k largest)."""
    if score == "topk":
        k = max(1, min(int(top_k), frame_scores.shape[1]))
        return frame_scores.topk(k, dim=1).values.mean(dim=1)
    return frame_scores.mean(dim=1)


class ErrorCovariance(nn.Module):
    """Covariance of normal reconstruction-error vectors, per domain (0 source, 1 target).

    Streaming: :meth:`reset`, :meth:`update` with ``(N, D)`` error vectors and their domain,
    then :meth:`finalize` (``sums`` add up across DDP ranks, as the normaliser's do). The
    precision matrices come from the shrunk covariance ``(1 - s) C + s * mean(diag C) * I``
    (``s = shrinkage``), so few frames or correlated dimensions still invert. A domain without
    data uses the source statistics.
    """

    def __init__(self, dim: int, shrinkage: float = 0.1, domains: int = 2) -> None:
        super().__init__()
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1], got {shrinkage}")
        self.dim, self.shrinkage, self.domains = dim, shrinkage, domains
        self.register_buffer("mean", torch.zeros(domains, dim))
        self.register_buffer("precision", torch.zeros(domains, dim, dim))
        self.register_buffer("count", torch.zeros(domains, dtype=torch.float64))
        self.reset()

    @property
    def fitted(self) -> bool:
        return bool(self.count.sum() > 0)

    def reset(self) -> None:
        self._n = torch.zeros(self.domains, dtype=torch.float64)
        self._sum = torch.zeros(self.domains, self.dim, dtype=torch.float64)
        self._outer = torch.zeros(self.domains, self.dim, self.dim, dtype=torch.float64)

    @torch.no_grad()
    def update(self, errors: torch.Tensor, domain: torch.Tensor) -> None:
        """Add error vectors ``(N, D)`` with their domain index ``(N,)`` (-1 counts as 0)."""
        errors = errors.detach().double().cpu()
        domain = domain.detach().cpu().clamp(0, self.domains - 1)
        for index in range(self.domains):
            rows = errors[domain == index]
            self._n[index] += rows.shape[0]
            self._sum[index] += rows.sum(dim=0)
            self._outer[index] += rows.T @ rows

    def sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self._n.clone(), self._sum.clone(), self._outer.clone()

    def finalize(self, sums: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None) -> None:
        """Turn the (summed) accumulators into means and precision matrices."""
        n, total, outer = (s.cpu().double() for s in (sums or self.sums()))
        if float(n.sum()) < 2:
            raise ValueError("mahalanobis score: fewer than 2 normal error vectors to fit on")
        eye = torch.eye(self.dim, dtype=torch.float64)
        for index in range(self.domains):
            source = index if n[index] >= 2 else 0
            count = n[source]
            mean = total[source] / count
            covariance = outer[source] / count - torch.outer(mean, mean)
            scale = covariance.diagonal().mean().clamp_min(1e-12)
            shrunk = (1 - self.shrinkage) * covariance + self.shrinkage * scale * eye
            self.mean[index] = mean.to(self.mean.dtype)
            self.precision[index] = torch.linalg.pinv(shrunk, hermitian=True).to(
                self.precision.dtype
            )
            self.count[index] = n[index]

    def forward(self, errors: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` error vectors -> ``(B, T)`` squared distances, min over domains."""
        if not self.fitted:
            raise RuntimeError("mahalanobis score used before its statistics were fitted")
        used = [i for i in range(self.domains) if self.count[i] > 0] or [0]
        distances = []
        for index in used:
            centred = errors.float() - self.mean[index].float()
            projected = centred @ self.precision[index].float()
            distances.append((projected * centred).sum(dim=-1))
        return torch.stack(distances).amin(dim=0)


@dataclass
class ScoredClips:
    """Scores of a loader's clips: ``index`` into its records, ``score`` and per-frame scores."""

    index: np.ndarray
    target: np.ndarray
    score: np.ndarray
    frame_scores: list[np.ndarray] | None = None


def score_loader(
    module: Scorer, loader: Iterable[dict[str, Any]], *, keep_frames: bool = False
) -> ScoredClips:
    """Score every batch of a loader in eval mode (restores the module's mode after)."""
    was_training = module.training
    module.train(False)
    indices, targets, scores, frames = [], [], [], []
    try:
        with torch.no_grad():
            for batch in loader:
                output = module.score(batch)
                scores.append(output.clip_scores.float().cpu().numpy())
                targets.append(batch["target"].cpu().numpy())
                indices.append(batch["index"].cpu().numpy())
                if keep_frames:
                    frames += list(output.frame_scores.float().cpu().numpy())
    finally:
        module.train(was_training)
    if not scores:
        raise ValueError("nothing to score: the data loader yielded no batches")
    return ScoredClips(
        index=np.concatenate(indices),
        target=np.concatenate(targets),
        score=np.concatenate(scores).astype(np.float64),
        frame_scores=frames if keep_frames else None,
    )
