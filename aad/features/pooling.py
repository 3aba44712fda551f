"""Clip embeddings from frame features: statistics over time, or the whole clip flattened."""

from collections.abc import Mapping, Sequence

import torch

STATS = ("mean", "std", "max", "min", "median")


def _statistic(features: torch.Tensor, name: str) -> torch.Tensor:
    if name == "mean":
        return features.mean(dim=1)
    if name == "std":
        return features.std(dim=1, correction=0)
    if name == "max":
        return features.amax(dim=1)
    if name == "min":
        return features.amin(dim=1)
    if name == "median":
        return features.quantile(0.5, dim=1)  # averages the two middle frames, as numpy
    raise ValueError(f"statistic {name!r} not in {STATS}")


def clip_embedding(
    parts_or_features: torch.Tensor | Mapping[str, torch.Tensor],
    mode: str = "pooled",
    stats: Sequence[str] = ("mean", "std"),
) -> torch.Tensor:
    """``(B, T, D)`` features or ``{name: (B, T_i, D_i)}`` parts -> ``(B, E)``.

    ``pooled``: for each part, each statistic over time (population std), concatenated as
    ``[part1 stat1, part1 stat2, ..., part2 stat1, ...]`` -> ``E = len(stats) * sum(D_i)``.
    ``flatten``: each part flattened time-major (frame 0's D_i values first), concatenated
    -> ``E = sum(T_i * D_i)`` (the study's "long vector").
    """
    if isinstance(parts_or_features, torch.Tensor):
        parts = [parts_or_features]
    else:
        parts = list(parts_or_features.values())
    if not parts:
        raise ValueError("clip_embedding got no features")
    for part in parts:
        if part.dim() != 3:
            raise ValueError(f"features must be (B, T, D), got shape {tuple(part.shape)}")
    if mode == "pooled":
        if not stats:
            raise ValueError("pooled mode needs at least one statistic")
        pieces = [_statistic(part, name) for part in parts for name in stats]
    elif mode == "flatten":
        pieces = [part.reshape(part.shape[0], -1) for part in parts]
    else:
        raise ValueError(f"mode={mode!r} not in ('pooled', 'flatten')")
    return torch.cat(pieces, dim=1)
