"""Mel filterbank, log compression and MFCC (DCT-II) on a shared power spectrum."""

import torch
import torchaudio.functional as AF
from torch import nn


class MelFilterbank(nn.Module):
    """Power spectrum ``(B, F, T)`` -> mel energies ``(B, n_mels, T)`` (torchaudio filters)."""

    def __init__(
        self,
        n_freqs: int,
        sample_rate: int,
        n_mels: int,
        f_min: float = 0.0,
        f_max: float | None = None,
        mel_scale: str = "slaney",
        norm: str | None = "slaney",
    ) -> None:
        super().__init__()
        fbank = AF.melscale_fbanks(
            n_freqs=n_freqs,
            f_min=float(f_min),
            f_max=float(f_max if f_max is not None else sample_rate / 2),
            n_mels=n_mels,
            sample_rate=sample_rate,
            norm=norm,
            mel_scale=mel_scale,
        )
        self.register_buffer("fbank", fbank.T.contiguous().float(), persistent=False)

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.fbank.to(power.dtype), power)


def log_compress(
    energies: torch.Tensor, mode: str, eps: float, power: float, top_db: float | None
) -> torch.Tensor:
    """Log of non-negative energies ``(B, D, T)``; ``top_db`` floors ``db`` per clip.

    Modes: ``db`` ``20 / power * log10(max(x, eps))`` (librosa ``power_to_db`` for power 2),
    ``dcase`` ``20 / power * log10(x + eps)``, ``natural`` ``ln(x + eps)``,
    ``log10`` ``log10(x + eps)``, ``none`` unchanged. Every mode is finite on silence.
    """
    if mode == "none":
        return energies
    if mode == "natural":
        return torch.log(energies + eps)
    if mode == "log10":
        return torch.log10(energies + eps)
    if mode == "dcase":
        return (20.0 / power) * torch.log10(energies + eps)
    if mode == "db":
        out = (20.0 / power) * torch.log10(energies.clamp_min(eps))
        if top_db is not None:
            ceiling = out.amax(dim=(-2, -1), keepdim=True)
            out = torch.maximum(out, ceiling - top_db)
        return out
    raise ValueError(f"unknown log mode {mode!r}")


class DCT(nn.Module):
    """Orthonormal DCT-II over the mel axis: ``(B, n_mels, T)`` -> ``(B, n_mfcc, T)``."""

    def __init__(self, n_mfcc: int, n_mels: int, drop_first: bool = False) -> None:
        super().__init__()
        matrix = AF.create_dct(n_mfcc, n_mels, norm="ortho").T  # (n_mfcc, n_mels)
        if drop_first:
            matrix = matrix[1:]
        self.register_buffer("matrix", matrix.contiguous().float(), persistent=False)

    def forward(self, log_mel: torch.Tensor) -> torch.Tensor:
        return torch.matmul(self.matrix.to(log_mel.dtype), log_mel)
