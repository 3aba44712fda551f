"""STFT chroma: a port of ``librosa.filters.chroma`` and ``librosa.util.normalize``."""

import math

import numpy as np
import torch
from torch import nn


def chroma_filterbank(
    sample_rate: int,
    n_fft: int,
    n_chroma: int = 12,
    tuning: float = 0.0,
    ctroct: float = 5.0,
    octwidth: float | None = 2.0,
    norm: float = 2.0,
    base_c: bool = True,
) -> np.ndarray:
    """Chroma filterbank ``(n_chroma, 1 + n_fft // 2)`` in float64, as librosa builds it."""
    frequencies = np.linspace(0, sample_rate, n_fft, endpoint=False)[1:]
    a440 = 440.0 * 2.0 ** (tuning / n_chroma)
    frqbins = n_chroma * np.log2(frequencies / (a440 / 16))
    # a made-up 0 Hz bin 1.5 octaves below bin 1 (librosa's convention)
    frqbins = np.concatenate(([frqbins[0] - 1.5 * n_chroma], frqbins))
    binwidthbins = np.concatenate((np.maximum(frqbins[1:] - frqbins[:-1], 1.0), [1]))
    dist = np.subtract.outer(frqbins, np.arange(0, n_chroma, dtype="d")).T
    half = np.round(float(n_chroma) / 2)
    dist = np.remainder(dist + half + 10 * n_chroma, n_chroma) - half
    weights = np.exp(-0.5 * (2 * dist / np.tile(binwidthbins, (n_chroma, 1))) ** 2)
    weights = _normalize_columns(weights, norm)
    if octwidth is not None:
        weights *= np.tile(
            np.exp(-0.5 * (((frqbins / n_chroma - ctroct) / octwidth) ** 2)), (n_chroma, 1)
        )
    if base_c:
        weights = np.roll(weights, -3 * (n_chroma // 12), axis=0)
    return np.ascontiguousarray(weights[:, : int(1 + n_fft / 2)])


def _normalize_columns(matrix: np.ndarray, norm: float) -> np.ndarray:
    if norm == math.inf:
        length = np.max(np.abs(matrix), axis=0, keepdims=True)
    else:
        length = np.sum(np.abs(matrix) ** norm, axis=0, keepdims=True) ** (1.0 / norm)
    length[length < np.finfo(matrix.dtype).tiny] = 1.0
    return matrix / length


def normalize_frames(x: torch.Tensor, norm: float | None, dim: int = -2) -> torch.Tensor:
    """``librosa.util.normalize`` along ``dim``: near-zero frames unchanged."""
    if norm is None:
        return x
    magnitude = x.abs()
    if norm == math.inf:
        length = magnitude.amax(dim=dim, keepdim=True)
    elif norm == 1:
        length = magnitude.sum(dim=dim, keepdim=True)
    elif norm == 2:
        length = magnitude.square().sum(dim=dim, keepdim=True).sqrt()
    elif norm > 0:
        length = magnitude.pow(norm).sum(dim=dim, keepdim=True).pow(1.0 / norm)
    else:
        raise ValueError(f"norm={norm} must be None, inf or > 0")
    tiny = torch.finfo(x.dtype).tiny
    return x / torch.where(length < tiny, torch.ones_like(length), length)


class ChromaFilterbank(nn.Module):
    """Power spectrum ``(B, F, T)`` -> raw chroma energies ``(B, n_chroma, T)``."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        n_chroma: int = 12,
        tuning: float = 0.0,
        ctroct: float = 5.0,
        octwidth: float | None = 2.0,
        base_c: bool = True,
    ) -> None:
        super().__init__()
        weights = chroma_filterbank(
            sample_rate, n_fft, n_chroma, tuning, ctroct, octwidth, base_c=base_c
        )
        self.register_buffer("weights", torch.from_numpy(weights).float(), persistent=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.weights.to(power.dtype), power)
