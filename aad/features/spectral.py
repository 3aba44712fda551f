"""Frame descriptors from the shared STFT, ports of ``librosa.feature`` (0.11) in torch.

Every module maps ``(B, F, T)`` spectra (``|X| ** power`` with ``power`` given by the module's
``power`` attribute) or, for ``zcr`` (``power is None``), ``(B, S)`` waveforms to
``(B, D, T)`` frame values, on the input's device. :func:`build_spectral_part` builds the one
a :class:`~aad.features.config.FeatureConfig` asks for.
"""

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aad.features.config import FeatureConfig
from aad.features.stft import STFTParams

CONTRAST_AMIN = 1e-10  # librosa.power_to_db's amin inside spectral_contrast


def fft_frequencies(sample_rate: int, n_fft: int) -> torch.Tensor:
    """Centre frequency of each one-sided bin, ``(n_fft // 2 + 1,)`` float32."""
    return torch.from_numpy(np.fft.rfftfreq(n_fft, 1.0 / sample_rate)).float()


class FrameRMS(nn.Module):
    """Power spectrum -> RMS ``(B, 1, T)``: ``sqrt(2 * sum(w * |X|^2) / n_fft^2)`` with the DC
    (and, for even ``n_fft``, Nyquist) bin weighted 1/2, as ``librosa.feature.rms(S=...)``;
    then ``20 * log10(max(rms, amin))`` when ``log == "db"``."""

    power = 2.0

    def __init__(self, n_fft: int, log: str = "db", amin: float = 1e-5) -> None:
        super().__init__()
        weights = torch.full((n_fft // 2 + 1,), 2.0 / n_fft**2, dtype=torch.float64)
        weights[0] *= 0.5
        if n_fft % 2 == 0:
            weights[-1] *= 0.5
        self.register_buffer("weights", weights.float().view(1, -1), persistent=False)
        self.log = log
        self.amin = amin

    def forward(self, power: torch.Tensor) -> torch.Tensor:
        rms = torch.matmul(self.weights.to(power.dtype), power).clamp_min(0.0).sqrt()
        if self.log == "db":
            return 20.0 * torch.log10(rms.clamp_min(self.amin))
        return rms


class SpectralCentroid(nn.Module):
    """``sum(f * S) / sum(S)`` per frame; frames with ``sum(S) < tiny`` give ``sum(f * S)``
    (librosa's normalise rule), i.e. 0 Hz for silence."""

    def __init__(self, sample_rate: int, n_fft: int, power: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("freqs", fft_frequencies(sample_rate, n_fft), persistent=False)
        self.power = power

    @staticmethod
    def frame_totals(spectrum: torch.Tensor) -> torch.Tensor:
        """``sum(S)`` per frame, 1 where it is below ``tiny`` (``librosa.util.normalize``)."""
        total = spectrum.sum(dim=-2, keepdim=True)
        return torch.where(total < torch.finfo(total.dtype).tiny, torch.ones_like(total), total)

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        weighted = torch.matmul(self.freqs.to(spectrum.dtype).view(1, -1), spectrum)
        return weighted / self.frame_totals(spectrum)


class SpectralBandwidth(SpectralCentroid):
    """``sum(S_norm * |f - centroid| ** p) ** (1 / p)``, computed bin by bin (no
    ``E[f^2] - c^2`` shortcut, which cancels badly in float32 for narrow spectra)."""

    def __init__(self, sample_rate: int, n_fft: int, p: float = 2.0, power: float = 1.0) -> None:
        super().__init__(sample_rate, n_fft, power)
        self.p = p

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        totals = self.frame_totals(spectrum)
        freqs = self.freqs.to(spectrum.dtype)
        centroid = torch.matmul(freqs.view(1, -1), spectrum) / totals
        deviation = (freqs.view(-1, 1) - centroid).abs()
        if self.p == 2.0:
            spread = (spectrum * deviation.square()).sum(dim=-2, keepdim=True) / totals
            return spread.sqrt()
        spread = (spectrum * deviation.pow(self.p)).sum(dim=-2, keepdim=True) / totals
        return spread.pow(1.0 / self.p)


class SpectralRolloff(SpectralCentroid):
    """Frequency of the first bin whose cumulative sum reaches ``roll_percent`` of the total."""

    def __init__(
        self, sample_rate: int, n_fft: int, roll_percent: float = 0.85, power: float = 1.0
    ) -> None:
        super().__init__(sample_rate, n_fft, power)
        self.roll_percent = roll_percent

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        cumulative = torch.cumsum(spectrum, dim=-2)
        threshold = self.roll_percent * cumulative[..., -1:, :]
        below = (cumulative < threshold).sum(dim=-2, keepdim=True)  # cumsum is non-decreasing
        index = below.clamp_max(spectrum.shape[-2] - 1)
        return self.freqs.to(spectrum.dtype)[index]


class SpectralFlatness(nn.Module):
    """``exp(mean(log(x))) / mean(x)`` with ``x = max(|X| ** power, amin)`` per frame."""

    def __init__(self, amin: float = 1e-10, power: float = 2.0, log: str = "none") -> None:
        super().__init__()
        self.amin = amin
        self.power = power
        self.log = log

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        floored = spectrum.clamp_min(self.amin)
        log_gmean = floored.log().mean(dim=-2, keepdim=True)
        if self.log == "db":
            return (10.0 / math.log(10.0)) * (log_gmean - floored.mean(dim=-2, keepdim=True).log())
        return log_gmean.exp() / floored.mean(dim=-2, keepdim=True)


def contrast_bands(
    sample_rate: int, n_fft: int, fmin: float, n_bands: int, quantile: float
) -> list[tuple[int, int, int]]:
    """``(first bin, end bin, count)`` per octave band, exactly as librosa selects them.

    Band k covers ``fmin * 2 ** (k - 1)`` to ``fmin * 2 ** k`` (band 0 from 0 Hz), plus the
    bin below for k > 0 and every bin above for the last band; all but the last drop their top
    bin; ``count = max(rint(quantile * bins before dropping), 1)``.
    """
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = np.zeros(n_bands + 2)
    edges[1:] = fmin * 2.0 ** np.arange(0, n_bands + 1)
    bands = []
    for k, (low, high) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        index = np.flatnonzero((freqs >= low) & (freqs <= high))
        if index.size == 0:
            raise ValueError(
                f"contrast band {k} ({low:g}-{high:g} Hz) holds no FFT bin at n_fft={n_fft}, "
                f"sample_rate={sample_rate}: raise n_fft or fmin"
            )
        first = int(index[0]) - 1 if k > 0 else int(index[0])
        end = freqs.size if k == n_bands else int(index[-1]) + 1
        count = int(max(np.rint(quantile * (end - first)), 1))
        if k < n_bands:
            end -= 1
        if end <= first:
            raise ValueError(
                f"contrast band {k} ({low:g}-{high:g} Hz) has no bin left below its top at "
                f"n_fft={n_fft}, sample_rate={sample_rate}: raise n_fft or fmin"
            )
        bands.append((first, end, min(count, end - first)))  # numpy slices clip the same way
    return bands


class SpectralContrast(nn.Module):
    """Per octave band, ``db(mean of the top count bins) - db(mean of the bottom count bins)``
    with ``db = 10 * log10(max(x, 1e-10))`` floored at ``top_db`` below the clip's maximum
    (each of peak and valley separately, as ``librosa.power_to_db`` on one clip)."""

    def __init__(
        self,
        sample_rate: int,
        n_fft: int,
        fmin: float = 200.0,
        n_bands: int = 6,
        quantile: float = 0.02,
        linear: bool = False,
        top_db: float | None = 80.0,
        power: float = 1.0,
    ) -> None:
        super().__init__()
        self.bands = contrast_bands(sample_rate, n_fft, fmin, n_bands, quantile)
        self.linear = linear
        self.top_db = top_db
        self.power = power

    def _db(self, x: torch.Tensor) -> torch.Tensor:
        out = 10.0 * torch.log10(x.clamp_min(CONTRAST_AMIN))
        if self.top_db is not None:
            out = torch.maximum(out, out.amax(dim=(-2, -1), keepdim=True) - self.top_db)
        return out

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        frames = spectrum.transpose(-2, -1).contiguous()  # (B, T, F): bins contiguous
        peaks, valleys = [], []
        for first, end, count in self.bands:
            band = frames[..., first:end]
            if count == 1:  # most bands at n_fft <= 2048: max / min, no selection needed
                peaks.append(band.amax(dim=-1))
                valleys.append(band.amin(dim=-1))
                continue
            peaks.append(band.topk(count, dim=-1).values.mean(dim=-1))
            valleys.append(band.topk(count, dim=-1, largest=False).values.mean(dim=-1))
        peak, valley = torch.stack(peaks, dim=-2), torch.stack(valleys, dim=-2)
        if self.linear:
            return peak - valley
        return self._db(peak) - self._db(valley)


class ZeroCrossingRate(nn.Module):
    """Waveform ``(B, S)`` -> ``(B, 1, T)``: sign changes between neighbouring samples of each
    frame (``|y| <= threshold`` counts as positive) divided by the frame length.

    Frames as the part's STFT cuts them: centred frames of ``n_fft`` (edge padding, as
    librosa's ``zero_crossing_rate``; the STFT's own ``pad_mode`` is not used), uncentred
    frames of ``n_fft``, or speechpy frames (first ``min(win, n_fft)`` samples of each).
    """

    power = None

    def __init__(self, params: STFTParams, threshold: float = 1e-10) -> None:
        super().__init__()
        self.params = params
        self.threshold = threshold
        if params.framing == "speechpy":
            self.length = min(params.win_length, params.n_fft)
        else:
            self.length = params.n_fft

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        p = self.params
        count = p.num_frames(waveform.shape[-1])
        if p.framing == "stft" and p.center:
            half = p.n_fft // 2
            waveform = F.pad(waveform.unsqueeze(1), (half, half), mode="replicate").squeeze(1)
        negative = waveform < -self.threshold
        changes = (negative[:, 1:] != negative[:, :-1]).to(torch.int32)
        cumulative = F.pad(torch.cumsum(changes, dim=-1, dtype=torch.int32), (1, 0))
        starts = torch.arange(count, device=waveform.device) * p.hop_length
        crossings = cumulative[:, starts + self.length - 1] - cumulative[:, starts]
        return (crossings.to(torch.float32) / self.length).unsqueeze(1)


def spectral_dim(name: str, config: FeatureConfig) -> int:
    """Values per frame of a frame-descriptor part."""
    return config.contrast.n_bands + 1 if name == "contrast" else 1


def build_spectral_part(name: str, config: FeatureConfig, params: STFTParams) -> nn.Module:
    """The module computing part ``name`` of ``config`` on the STFT ``params``."""
    sr, n_fft, c = config.sample_rate, params.n_fft, getattr(config, name)
    if name == "rms":
        return FrameRMS(n_fft, c.log, c.amin)
    if name == "centroid":
        return SpectralCentroid(sr, n_fft, c.power)
    if name == "bandwidth":
        return SpectralBandwidth(sr, n_fft, c.p, c.power)
    if name == "rolloff":
        return SpectralRolloff(sr, n_fft, c.roll_percent, c.power)
    if name == "flatness":
        return SpectralFlatness(c.amin, c.power, c.log)
    if name == "contrast":
        return SpectralContrast(sr, n_fft, c.fmin, c.n_bands, c.quantile, c.linear, c.top_db,
                                c.power)  # fmt: skip
    if name == "zcr":
        return ZeroCrossingRate(params, c.threshold)
    raise ValueError(f"{name!r} is not a frame-descriptor part")
