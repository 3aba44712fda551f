"""CENS post-processing of chroma, the steps of ``librosa.feature.chroma_cens`` in torch."""

import numpy as np
import scipy.signal
import torch
import torch.nn.functional as F
from torch import nn

from aad.features.chroma import normalize_frames

QUANT_STEPS = (0.4, 0.2, 0.1, 0.05)
QUANT_WEIGHT = 0.25


class CENS(nn.Module):
    """Chroma ``(B, C, T)`` -> CENS ``(B, C, ceil(T / subsample))``.

    L1 per frame, quantise, Hann-smooth over ``win_len_smooth`` frames (zero padded, as
    ``scipy.ndimage.convolve(mode="constant")``), keep every ``subsample``-th frame, ``norm``.
    """

    def __init__(
        self, win_len_smooth: int | None = 41, norm: float | None = 2.0, subsample: int = 1
    ) -> None:
        super().__init__()
        self.norm = norm
        self.subsample = subsample
        if win_len_smooth:
            window = scipy.signal.get_window("hann", win_len_smooth + 2, fftbins=False)
            window = np.asarray(window / window.sum())[::-1].copy()  # convolve = flipped correlate
            kernel = torch.from_numpy(window).float().view(1, 1, -1)
        else:
            kernel = torch.ones(1, 1, 1)
        self.register_buffer("kernel", kernel, persistent=False)

    def forward(self, chroma: torch.Tensor) -> torch.Tensor:
        chroma = normalize_frames(chroma, 1.0, dim=-2)
        quantised = torch.zeros_like(chroma)
        for step in QUANT_STEPS:
            quantised = quantised + (chroma > step).to(chroma.dtype) * QUANT_WEIGHT
        width = self.kernel.shape[-1]
        if width > 1:
            batch, n_chroma, frames = quantised.shape
            left = (width - 1) // 2  # where scipy.ndimage.convolve centres the kernel
            padded = F.pad(quantised.reshape(batch * n_chroma, 1, frames), (left, width - 1 - left))
            smoothed = F.conv1d(padded, self.kernel.to(quantised.dtype))
            quantised = smoothed.reshape(batch, n_chroma, frames)
        if self.subsample > 1:
            quantised = quantised[..., :: self.subsample]
        return normalize_frames(quantised, self.norm, dim=-2)
