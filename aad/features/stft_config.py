"""STFT settings shared by every feature part (kept torch-free, like the rest of the config)."""

from dataclasses import dataclass


@dataclass
class STFTConfig:
    """How waveforms are cut into frames and transformed.

    ``framing="stft"``: torch.stft semantics (``center`` pads ``n_fft // 2`` with ``pad_mode``;
    the window of ``win_length`` is zero-padded to ``n_fft``). ``framing="speechpy"``: frames of
    ``win_length`` every ``hop_length`` with speechpy's count ``floor((S - win) / hop)``, each
    windowed and given to an FFT of ``n_fft`` points (truncated when ``n_fft < win_length``).
    ``hop_seconds`` / ``win_seconds``, when set, override the sample counts
    (``round(seconds * sample_rate)``).
    """

    n_fft: int = 1024
    hop_length: int = 512
    win_length: int | None = None
    hop_seconds: float | None = None
    win_seconds: float | None = None
    window: str = "hann"
    center: bool = True
    pad_mode: str = "constant"
    framing: str = "stft"
