"""The one STFT of the front-end: resolved settings, windows, frame counts and frame times."""

import math
from dataclasses import dataclass

import torch
from torch import nn

from aad.features.config import STFTConfig


@dataclass(frozen=True)
class STFTParams:
    """STFT settings in samples; hashable, used as the cache key for sharing one STFT."""

    n_fft: int
    hop_length: int
    win_length: int
    window: str
    center: bool
    pad_mode: str
    framing: str

    @classmethod
    def resolve(cls, config: STFTConfig, sample_rate: int) -> "STFTParams":
        """Turn seconds into samples and fill defaults; raise ``ValueError`` on bad values."""
        hop = config.hop_length
        if config.hop_seconds is not None:
            hop = int(round(config.hop_seconds * sample_rate))
        win = config.win_length if config.win_length is not None else config.n_fft
        if config.win_seconds is not None:
            win = int(round(config.win_seconds * sample_rate))
        params = cls(
            int(config.n_fft), int(hop), int(win), config.window, bool(config.center),
            config.pad_mode, config.framing,
        )  # fmt: skip
        if min(params.n_fft, params.hop_length, params.win_length) < 1:
            raise ValueError(f"STFT sizes must be positive, got {params}")
        if params.framing == "stft" and params.win_length > params.n_fft:
            raise ValueError(
                f"win_length={params.win_length} > n_fft={params.n_fft}: only "
                "framing='speechpy' truncates frames longer than the FFT"
            )
        if params.pad_mode not in ("constant", "reflect", "replicate", "circular"):
            raise ValueError(f"pad_mode={params.pad_mode!r} is not supported by torch.stft")
        return params

    @property
    def n_freqs(self) -> int:
        """Number of one-sided frequency bins."""
        return self.n_fft // 2 + 1

    def min_samples(self) -> int:
        """Shortest clip that yields at least one frame."""
        if self.framing == "speechpy":
            return self.win_length + self.hop_length
        if self.center:
            return self.n_fft // 2 + 1
        return self.n_fft

    def num_frames(self, num_samples: int) -> int:
        """Frames for a clip of ``num_samples`` (0 when too short)."""
        if num_samples < self.min_samples():
            return 0
        if self.framing == "speechpy":
            return (num_samples - self.win_length) // self.hop_length
        if self.center:  # torch.stft pads n_fft // 2 on each side (odd n_fft: one short)
            padded = num_samples + 2 * (self.n_fft // 2)
            return 1 + (padded - self.n_fft) // self.hop_length
        return 1 + (num_samples - self.n_fft) // self.hop_length

    def frame_offset(self) -> float:
        """Sample position of the centre of frame 0 (frame j is at ``offset + j * hop``)."""
        if self.framing == "speechpy":
            return min(self.win_length, self.n_fft) / 2.0
        return 0.0 if self.center else self.n_fft / 2.0


def make_window(name: str, length: int) -> torch.Tensor:
    """Periodic window (``fftbins=True``, as librosa and torchaudio use for STFTs)."""
    if name == "rect":
        return torch.ones(length)
    makers = {
        "hann": torch.hann_window,
        "hamming": torch.hamming_window,
        "blackman": torch.blackman_window,
    }
    if name not in makers:
        raise ValueError(f"window={name!r} not in ('hann', 'hamming', 'blackman', 'rect')")
    return makers[name](length, periodic=True, dtype=torch.float64).float()


class STFT(nn.Module):
    """``(B, S)`` float waveform -> complex spectrum ``(B, n_fft // 2 + 1, T)``."""

    def __init__(self, params: STFTParams) -> None:
        super().__init__()
        self.params = params
        length = params.win_length
        if params.framing == "speechpy":
            length = min(params.win_length, params.n_fft)  # only these samples reach the FFT
            window = make_window(params.window, params.win_length)[:length]
        else:
            window = make_window(params.window, length)
        self.register_buffer("window", window, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        p = self.params
        window = self.window.to(waveform.dtype)
        if p.framing == "speechpy":
            count = p.num_frames(waveform.shape[-1])
            frames = waveform.unfold(-1, p.win_length, p.hop_length)[:, :count, : window.numel()]
            spectrum = torch.fft.rfft(frames * window, n=p.n_fft, dim=-1)
            return spectrum.transpose(1, 2)
        return torch.stft(
            waveform,
            n_fft=p.n_fft,
            hop_length=p.hop_length,
            win_length=p.win_length,
            window=window,
            center=p.center,
            pad_mode=p.pad_mode,
            return_complex=True,
        )


def power_spectrum(spectrum: torch.Tensor, power: float) -> torch.Tensor:
    """``|X| ** power`` without a square root when ``power == 2``."""
    if power == 2.0:
        parts = torch.view_as_real(spectrum)
        real, imag = parts[..., 0], parts[..., 1]
        return torch.addcmul(real * real, imag, imag)
    if power == 1.0:
        return spectrum.abs()
    return spectrum.abs().pow(power)


def subsampled_count(num_frames: int, step: int) -> int:
    """Frames left after keeping every ``step``-th one (``x[::step]``)."""
    return math.ceil(num_frames / step) if num_frames > 0 else 0
