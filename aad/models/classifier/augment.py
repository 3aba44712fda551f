"""Crops, mixup and self-supervised pseudo-classes for the machine-id classifier.

Everything works on batches of raw waveforms ``(B, S)`` with torch ops (any device) and draws
its randomness from a ``torch.Generator``, so the same generator state gives the same crops.

- :func:`random_crops` (training) and :func:`sliding_crops` (scoring: every crop with a hop,
  the last one aligned to the clip's end, so the crops cover the clip).
- :func:`mixup`: convex mixes of examples and their labels (one weight per example).
- :class:`PseudoClasses`: for a machine type with a single id and no attributes, four classes
  made from normal clips: the crop as recorded, pitch-shifted (resampled), time-stretched
  (phase vocoder, pitch kept) and mixed with a crop of another clip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

PSEUDO_CLASS_NAMES = ("original", "pitch_shift", "time_stretch", "mix")


def crop_starts(num_samples: int, crop_samples: int, hop_samples: int) -> list[int]:
    """Start samples of crops every ``hop_samples`` that cover the clip; the last crop ends at
    the clip's end. A clip no longer than a crop is one crop at 0.

    >>> crop_starts(10, 4, 3)
    [0, 3, 6]
    >>> crop_starts(11, 4, 3)
    [0, 3, 6, 7]
    """
    if crop_samples < 1 or hop_samples < 1:
        raise ValueError(f"crop and hop must be >= 1 sample, got {crop_samples}, {hop_samples}")
    if num_samples <= crop_samples:
        return [0]
    starts = list(range(0, num_samples - crop_samples + 1, hop_samples))
    if starts[-1] != num_samples - crop_samples:
        starts.append(num_samples - crop_samples)
    return starts


def _pad_to(waveform: torch.Tensor, length: int) -> torch.Tensor:
    if waveform.shape[-1] >= length:
        return waveform
    return F.pad(waveform, (0, length - waveform.shape[-1]))


def crop_windows(waveform: torch.Tensor, crop_samples: int, hop_samples: int) -> torch.Tensor:
    """``(B, S)`` with ``S >= crop_samples`` -> ``(B, K, crop_samples)``: the crops of
    :func:`crop_starts`, in tensor ops whose sizes follow the input (so ``aad.export`` traces
    the same function): every ``hop_samples``, the last start clamped to ``S - crop``."""
    span = waveform.shape[-1] - crop_samples
    count = (span + hop_samples - 1) // hop_samples + 1
    starts = (torch.arange(count, device=waveform.device) * hop_samples).clamp(max=span)
    return waveform[:, starts[:, None] + torch.arange(crop_samples, device=waveform.device)]


def sliding_crops(waveform: torch.Tensor, crop_samples: int, hop_samples: int) -> torch.Tensor:
    """``(B, S)`` -> ``(B, K, crop_samples)``: every crop of :func:`crop_starts` (zero-padded
    at the end when the clip is shorter than a crop)."""
    if crop_samples < 1 or hop_samples < 1:
        raise ValueError(f"crop and hop must be >= 1 sample, got {crop_samples}, {hop_samples}")
    return crop_windows(_pad_to(waveform, crop_samples), crop_samples, hop_samples)


def _gather_windows(waveform: torch.Tensor, rows: torch.Tensor, starts: torch.Tensor, length: int):
    """``waveform[rows[i], starts[i] : starts[i] + length]`` for every i -> ``(N, length)``."""
    index = starts[:, None] + torch.arange(length, device=waveform.device)[None, :]
    return waveform[rows[:, None], index]


def _random_starts(
    count: int, num_samples: int, length: int, generator: torch.Generator | None, device
) -> torch.Tensor:
    high = max(num_samples - length, 0) + 1
    return torch.randint(0, high, (count,), generator=generator, device=device)


def random_crops(
    waveform: torch.Tensor,
    crop_samples: int,
    crops_per_clip: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``(B, S)`` -> ``(B, K, crop_samples)`` crops at uniform random starts."""
    batch = waveform.shape[0]
    waveform = _pad_to(waveform, crop_samples)
    rows = torch.arange(batch, device=waveform.device).repeat_interleave(crops_per_clip)
    starts = _random_starts(len(rows), waveform.shape[-1], crop_samples, generator, rows.device)
    windows = _gather_windows(waveform, rows, starts, crop_samples)
    return windows.view(batch, crops_per_clip, crop_samples)


def mixup(
    inputs: Sequence[torch.Tensor], generator: torch.Generator | None = None
) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
    """Mix every example with a random partner: ``lam * x + (1 - lam) * x[perm]``.

    ``lam`` is uniform in [0, 1] per example (Beta(1, 1)); each tensor of ``inputs`` (same
    leading size N) is mixed with the same ``perm`` and ``lam``. Returns the mixed tensors,
    ``perm`` (the partner of each row: mix labels as ``lam * loss(y) + (1 - lam) *
    loss(y[perm])``) and ``lam`` ``(N,)``.
    """
    count = inputs[0].shape[0]
    device = inputs[0].device
    perm = torch.randperm(count, generator=generator, device=device)
    lam = torch.rand(count, generator=generator, device=device)
    mixed = []
    for x in inputs:
        weight = lam.view(-1, *([1] * (x.dim() - 1))).to(x.dtype)
        mixed.append(weight * x + (1 - weight) * x[perm])
    return mixed, perm, lam


# ------------------------------------------------------------------ pseudo-class transforms
def resample_shift(windows: torch.Tensor, factors: torch.Tensor, length: int) -> torch.Tensor:
    """Play each window ``factors[i]`` times faster (pitch and tempo up by that factor; < 1:
    down) by linear interpolation; returns the first ``length`` output samples.

    Needs ``windows.shape[1] >= ceil((length - 1) * max(factors)) + 2``. No anti-alias filter:
    shifts of a few semitones alias only the top ``1 - 1 / factor`` of the band.
    """
    position = torch.arange(length, device=windows.device, dtype=torch.float32)
    position = position[None, :] * factors[:, None].float()
    if float(position.max()) > windows.shape[1] - 2:
        raise ValueError(f"windows of {windows.shape[1]} samples too short for {length} out")
    left = position.floor().long()
    frac = (position - left).to(windows.dtype)
    return windows.gather(1, left) * (1 - frac) + windows.gather(1, left + 1) * frac


def time_stretch(
    windows: torch.Tensor, rates: torch.Tensor, length: int, n_fft: int = 512, hop: int = 128
) -> torch.Tensor:
    """Phase-vocoder time stretch, one rate per window (> 1: faster), pitch unchanged.

    Output frame k reads input frame position ``k * rate`` (magnitudes interpolated, phases
    advanced by the measured instantaneous frequency); the first ``length`` samples of the
    inverse STFT are returned. Needs about ``length * max(rates) + n_fft`` input samples.
    """
    window = torch.hann_window(n_fft, device=windows.device, dtype=windows.dtype)
    spec = torch.stft(windows, n_fft, hop, window=window, center=True, return_complex=True)
    n_in = spec.shape[-1]
    n_out = length // hop + 1
    steps = torch.arange(n_out, device=windows.device, dtype=torch.float32)
    position = steps[None, :] * rates[:, None].float()  # (N, n_out)
    if float(position.max()) > n_in - 2:
        raise ValueError(f"windows of {windows.shape[1]} samples too short for {length} out")
    left = position.floor().long()
    frac = (position - left)[:, None, :]
    n_freq = spec.shape[1]

    def at(frames: torch.Tensor) -> torch.Tensor:
        return spec.gather(2, frames[:, None, :].expand(-1, n_freq, -1))

    here, there = at(left), at(left + 1)
    magnitude = (1 - frac) * here.abs() + frac * there.abs()
    expected = torch.linspace(0, math.pi * hop, n_freq, device=windows.device)[None, :, None]
    delta = there.angle() - here.angle() - expected
    delta = delta - 2 * math.pi * torch.round(delta / (2 * math.pi))
    advance = expected + delta
    phase = torch.cat([spec[:, :, :1].angle(), advance[:, :, :-1]], dim=2).cumsum(dim=2)
    stretched = torch.polar(magnitude, phase)
    out = torch.istft(stretched, n_fft, hop, window=window, center=True, length=length)
    return out


def _match_rms(signal: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Scale each row of ``signal`` to the RMS of the same row of ``reference``."""
    rms_ref = reference.square().mean(dim=1, keepdim=True).sqrt()
    rms_out = signal.square().mean(dim=1, keepdim=True).sqrt().clamp_min(1e-8)
    return signal * (rms_ref / rms_out)


def mix_rms(windows: torch.Tensor, others: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """``windows + gains * others``, rescaled to the RMS of ``windows`` (no loudness cue)."""
    return _match_rms(windows + gains[:, None].to(windows.dtype) * others, windows)


@dataclass
class PseudoClasses:
    """Four self-supervised classes from normal clips of one machine (see the module doc).

    Class 0 is the crop as recorded; 1 resampled by +-``semitones`` (uniform magnitude, random
    sign); 2 time-stretched by a rate in ``1 +- stretch`` (random side); 3 mixed with a crop of
    another clip of the batch (the same clip elsewhere when the batch has one clip) at a gain
    of ``mix_db`` dB. Classes 1-3 are brought back to the crop's RMS, so loudness tells
    nothing. A test clip is scored as class 0.
    """

    semitones: tuple[float, float] = (1.0, 3.0)
    stretch: tuple[float, float] = (0.1, 0.25)
    mix_db: tuple[float, float] = (-6.0, 0.0)
    n_fft: int = 512
    hop: int = 128

    num_classes = len(PSEUDO_CLASS_NAMES)

    def _uniform(self, span: tuple[float, float], count: int, generator, device) -> torch.Tensor:
        low, high = span
        return low + (high - low) * torch.rand(count, generator=generator, device=device)

    def _sign(self, count: int, generator, device) -> torch.Tensor:
        return torch.randint(0, 2, (count,), generator=generator, device=device) * 2.0 - 1.0

    def context_samples(self, crop_samples: int) -> int:
        """Samples read around each crop so that every transform has enough input."""
        fastest = max(2 ** (self.semitones[1] / 12), 1 + self.stretch[1])
        return int(math.ceil(crop_samples * fastest)) + self.n_fft + 2

    def __call__(
        self,
        waveform: torch.Tensor,
        crop_samples: int,
        crops_per_clip: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, S)`` clips -> crops ``(B, K, crop_samples)`` and their classes ``(B, K)``.

        The classes of a clip's K crops cycle through 0..3 from a random offset, so each
        batch is balanced when K is a multiple of 4.
        """
        batch, device = waveform.shape[0], waveform.device
        context = self.context_samples(crop_samples)
        waveform = _pad_to(waveform, context)
        count = batch * crops_per_clip
        rows = torch.arange(batch, device=device).repeat_interleave(crops_per_clip)
        offset = torch.randint(0, self.num_classes, (batch,), generator=generator, device=device)
        step = torch.arange(crops_per_clip, device=device).repeat(batch)
        classes = (step + offset.repeat_interleave(crops_per_clip)) % self.num_classes
        starts = _random_starts(count, waveform.shape[-1], context, generator, device)
        windows = _gather_windows(waveform, rows, starts, context)
        # draw every random quantity for every crop, so the stream does not depend on classes
        pitch = 2 ** (self._sign(count, generator, device)
                      * self._uniform(self.semitones, count, generator, device) / 12)  # fmt: skip
        rate = 1 + self._sign(count, generator, device) * self._uniform(
            self.stretch, count, generator, device
        )
        shift = torch.randint(1, max(batch, 2), (count,), generator=generator, device=device)
        partner_rows = (rows + shift) % batch if batch > 1 else rows
        partner_starts = _random_starts(count, waveform.shape[-1], crop_samples, generator, device)
        gain = 10 ** (self._uniform(self.mix_db, count, generator, device) / 20)

        crops = windows[:, :crop_samples].clone()
        chosen = classes == 1
        if chosen.any():
            shifted = resample_shift(windows[chosen], pitch[chosen], crop_samples)
            crops[chosen] = _match_rms(shifted, crops[chosen])
        chosen = classes == 2
        if chosen.any():
            stretched = time_stretch(windows[chosen], rate[chosen], crop_samples,
                                     self.n_fft, self.hop)  # fmt: skip
            crops[chosen] = _match_rms(stretched, crops[chosen])
        chosen = classes == 3
        if chosen.any():
            others = _gather_windows(waveform, partner_rows[chosen], partner_starts[chosen],
                                     crop_samples)  # fmt: skip
            crops[chosen] = mix_rms(crops[chosen], others, gain[chosen])
        return crops.view(batch, crops_per_clip, crop_samples), classes.view(batch, -1)
