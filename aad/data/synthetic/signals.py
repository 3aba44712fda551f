"""Signal building blocks of the synthetic machines: coloured and band noise, harmonic
series, damped ringing at event times, gates. Plain numpy; every random draw comes from the
caller's generator, so a seeded generator gives identical signals."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import fft as sp_fft

TWO_PI = 2.0 * np.pi


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def unit(x: np.ndarray) -> np.ndarray:
    return x / rms(x)


def spectral_noise(
    rng: np.random.Generator, n: int, sr: int, shape: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Unit-RMS noise whose amplitude spectrum is ``shape(freqs)`` (float32 FFTs: fast)."""
    size = sp_fft.next_fast_len(n, real=True)
    spectrum = sp_fft.rfft(rng.standard_normal(size, dtype=np.float32))
    spectrum *= shape(np.fft.rfftfreq(size, 1.0 / sr)).astype(np.float32)
    return unit(sp_fft.irfft(spectrum, size)[:n].astype(np.float64))


def coloured(rng: np.random.Generator, n: int, sr: int, exponent: float) -> np.ndarray:
    """1/f^exponent (power) noise; exponent 1 is pink."""
    return spectral_noise(rng, n, sr, lambda f: 1.0 / np.maximum(f, 20.0) ** (exponent / 2))


def band_noise(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """Band-limited noise with soft (raised-cosine-ish) edges."""

    def shape(f: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + ((f - np.sqrt(lo * hi)) / (0.5 * (hi - lo))) ** 8)

    return spectral_noise(rng, n, sr, shape)


def resonance(rng: np.random.Generator, n: int, sr: int, centre: float, q: float) -> np.ndarray:
    """Noise through a resonant peak at ``centre`` (bandwidth centre/q) over a pink floor."""

    def shape(f: np.ndarray) -> np.ndarray:
        peak = 1.0 / (1.0 + ((f - centre) / (centre / q)) ** 2)
        return peak + 0.05 / np.sqrt(np.maximum(f, 50.0) / 50.0)

    return spectral_noise(rng, n, sr, shape)


def phase_track(freq: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Running phase (radians) of an instantaneous frequency track."""
    track = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return 2.0 * np.pi * np.cumsum(track) / sr


def harmonics(
    phase: np.ndarray, orders: np.ndarray, amps: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Sum of ``amps[k] * sin(orders[k] * phase + random phase)``.

    Orders must be multiples of 0.5. The sum is periodic in the phase, so it is tabulated
    over one period and read back with linear interpolation: cost independent of the
    number of harmonics.
    """
    offsets = rng.uniform(0, TWO_PI, size=len(orders))
    base = 1.0 if np.allclose(orders, np.round(orders)) else 0.5
    multiples = np.round(np.asarray(orders) / base)
    # >= 64 table points per cycle of the highest harmonic: interpolation error < -70 dB
    size = max(1024, 1 << int(np.ceil(np.log2(64 * multiples.max()))))
    grid = np.arange(size + 1) * (TWO_PI / size)
    table = np.sin(multiples[:, None] * grid[None, :] + offsets[:, None]).T @ np.asarray(amps)
    position = base * phase / TWO_PI
    position = (position - np.floor(position)) * size
    index = position.astype(np.int64)
    frac = position - index
    return table[index] * (1.0 - frac) + table[index + 1] * frac


def ringing(
    n: int, sr: int, onsets: np.ndarray, amps: np.ndarray, freq: float, decay_s: float
) -> np.ndarray:
    """Impulses at ``onsets`` (samples) each exciting a damped resonance at ``freq``.

    The kernels are summed directly (``np.bincount``): events are sparse, so this beats an
    FFT convolution of the whole clip.
    """
    length = int(decay_s * sr * 6) + 1
    t = np.arange(length) / sr
    kernel = np.exp(-t / decay_s) * np.sin(2 * np.pi * freq * t)
    keep = (onsets >= 0) & (onsets < n)
    starts, weights = onsets[keep].astype(np.int64), np.asarray(amps)[keep]
    index = (starts[:, None] + np.arange(length)[None, :]).ravel()
    values = (weights[:, None] * kernel[None, :]).ravel()
    summed = np.bincount(index, weights=values, minlength=n + length)[:n]
    return summed.astype(np.float64)  # bincount gives int64 when there are no events


def train_rms(rate: float, decay_s: float) -> float:
    """Long-run RMS of unit impulses at ``rate`` Hz ringing with ``decay_s`` (see ringing)."""
    return float(np.sqrt(rate * decay_s / 4.0))


def periodic_onsets(
    rng: np.random.Generator, n: int, sr: int, rate: float, jitter: float, start: float
) -> np.ndarray:
    """Event times (samples) at ``rate`` Hz with relative timing jitter."""
    count = int(n / sr * rate) + 2
    gaps = (1.0 + jitter * rng.standard_normal(count)) / rate
    return np.round((start + np.concatenate([[0.0], np.cumsum(gaps[:-1])])) * sr)


def poisson_onsets(rng: np.random.Generator, n: int, sr: int, rate: float) -> np.ndarray:
    count = rng.poisson(rate * n / sr)
    return np.sort(rng.integers(0, n, size=count)).astype(np.float64)


def gate(n: int, sr: int, period: float, duty: float, offset: float, edge: float) -> np.ndarray:
    """0..1 envelope that is on for ``duty`` of every ``period`` (smooth edges)."""
    position = ((np.arange(n) / sr + offset) % period) / period
    on = np.clip(np.minimum(position, duty - position) / max(edge / period, 1e-6), 0, 1)
    return np.where(position < duty, on, 0.0)


def db(value: float) -> float:
    return 10.0 ** (value / 20.0)


def spread(lo: float, hi: float, factor: float) -> tuple[float, float]:
    """``(lo, hi)`` widened about its middle by ``factor``; exactly ``(lo, hi)`` at 1.

    >>> spread(-1.0, 1.0, 3.0)
    (-3.0, 3.0)
    """
    if factor == 1.0:
        return lo, hi
    middle, half = (lo + hi) / 2.0, (hi - lo) / 2.0 * factor
    return middle - half, middle + half


def toward(value: float, baseline: float, keep: float) -> float:
    """``value`` moved toward ``baseline``, keeping ``keep`` of the difference (exact at 1)."""
    if keep == 1.0:
        return value
    return baseline + (value - baseline) * keep
