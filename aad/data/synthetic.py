"""Synthetic machine sounds: the built-in default dataset (no download needed).

Four machine types with distinct physics, several ids each (every id has its own base
frequency, resonances and timing), background noise at a chosen SNR, normal clips that
vary a little (speed, level, harmonic balance, noise), and anomalies modelled on real
faults. Everything is drawn from ``numpy.random.default_rng`` seeded per clip, so the same
seed writes byte-identical files.

    python -m aad.data.synthetic --root data/synthetic --layout dcase2020 --size small
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import shutil
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import fft as sp_fft
from tqdm.auto import tqdm

MACHINE_TYPES = ("fan", "pump", "slider", "valve")
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "fan": ("imbalance", "bearing", "blade_rub"),
    "pump": ("clogging", "cavitation", "speed_shift"),
    "slider": ("rattle", "squeal", "stopper_impact"),
    "valve": ("leak", "contamination", "seat_wear"),
}
SIZES: dict[str, dict[str, int]] = {
    "small": {"n_train": 40, "n_test_normal": 10, "n_test_anomaly": 10},
    "large": {"n_train_per_type": 1000, "n_test_normal": 50, "n_test_anomaly": 50},
}
MACHINE_RMS = 0.05  # about -26 dBFS, leaves head room for impulsive anomalies
SYNTHETIC_LAYOUTS = ("dcase2020", "mimii", "dcase2021")
MIMII_CHANNELS = 8
TWO_PI = 2.0 * np.pi


# --------------------------------------------------------------------------- signal helpers
def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)) + 1e-20))


def _unit(x: np.ndarray) -> np.ndarray:
    return x / _rms(x)


def _spectral_noise(
    rng: np.random.Generator, n: int, sr: int, shape: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Unit-RMS noise whose amplitude spectrum is ``shape(freqs)`` (float32 FFTs: fast)."""
    size = sp_fft.next_fast_len(n, real=True)
    spectrum = sp_fft.rfft(rng.standard_normal(size, dtype=np.float32))
    spectrum *= shape(np.fft.rfftfreq(size, 1.0 / sr)).astype(np.float32)
    return _unit(sp_fft.irfft(spectrum, size)[:n].astype(np.float64))


def _coloured(rng: np.random.Generator, n: int, sr: int, exponent: float) -> np.ndarray:
    """1/f^exponent (power) noise; exponent 1 is pink."""
    return _spectral_noise(rng, n, sr, lambda f: 1.0 / np.maximum(f, 20.0) ** (exponent / 2))


def _band(rng: np.random.Generator, n: int, sr: int, lo: float, hi: float) -> np.ndarray:
    """Band-limited noise with soft (raised-cosine-ish) edges."""

    def shape(f: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + ((f - np.sqrt(lo * hi)) / (0.5 * (hi - lo))) ** 8)

    return _spectral_noise(rng, n, sr, shape)


def _resonance(rng: np.random.Generator, n: int, sr: int, centre: float, q: float) -> np.ndarray:
    """Noise through a resonant peak at ``centre`` (bandwidth centre/q) over a pink floor."""

    def shape(f: np.ndarray) -> np.ndarray:
        peak = 1.0 / (1.0 + ((f - centre) / (centre / q)) ** 2)
        return peak + 0.05 / np.sqrt(np.maximum(f, 50.0) / 50.0)

    return _spectral_noise(rng, n, sr, shape)


def _phase(freq: np.ndarray | float, n: int, sr: int) -> np.ndarray:
    """Running phase (radians) of an instantaneous frequency track."""
    track = np.broadcast_to(np.asarray(freq, dtype=np.float64), (n,))
    return 2.0 * np.pi * np.cumsum(track) / sr


def _harmonics(
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


def _ringing(
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


def _train_rms(rate: float, decay_s: float) -> float:
    """Long-run RMS of unit impulses at ``rate`` Hz ringing with ``decay_s`` (see _ringing)."""
    return float(np.sqrt(rate * decay_s / 4.0))


def _periodic_onsets(
    rng: np.random.Generator, n: int, sr: int, rate: float, jitter: float, start: float
) -> np.ndarray:
    """Event times (samples) at ``rate`` Hz with relative timing jitter."""
    count = int(n / sr * rate) + 2
    gaps = (1.0 + jitter * rng.standard_normal(count)) / rate
    return np.round((start + np.concatenate([[0.0], np.cumsum(gaps[:-1])])) * sr)


def _poisson_onsets(rng: np.random.Generator, n: int, sr: int, rate: float) -> np.ndarray:
    count = rng.poisson(rate * n / sr)
    return np.sort(rng.integers(0, n, size=count)).astype(np.float64)


def _gate(n: int, sr: int, period: float, duty: float, offset: float, edge: float) -> np.ndarray:
    """0..1 envelope that is on for ``duty`` of every ``period`` (smooth edges)."""
    position = ((np.arange(n) / sr + offset) % period) / period
    on = np.clip(np.minimum(position, duty - position) / max(edge / period, 1e-6), 0, 1)
    return np.where(position < duty, on, 0.0)


def _db(value: float) -> float:
    return 10.0 ** (value / 20.0)


# --------------------------------------------------------------------------- machines
@dataclass
class Clip:
    """What a synthesiser needs to know about one clip."""

    rng: np.random.Generator
    n: int
    sr: int
    params: dict[str, float]
    anomaly: str | None
    speed: float = 1.0  # operating condition (DCASE 2021 "target domain" changes it)

    @property
    def seconds(self) -> float:
        return self.n / self.sr


def _severity(clip: Clip) -> float:
    """Level of an additive anomaly relative to the machine, in dB (-6..0)."""
    return float(clip.rng.uniform(-6.0, 0.0))


def _fan(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    f_rot = p["f_rot"] * clip.speed * (1 + rng.uniform(-0.015, 0.015))
    wobble = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * np.arange(n) / sr)
    phase = _phase(f_rot * wobble, n, sr)
    orders = np.arange(1, 13, dtype=np.float64)
    rotor = _harmonics(phase, orders, orders**-1.0 * _db(rng.uniform(-1, 1)), rng)
    blades = p["blades"]
    bpf_orders = blades * np.arange(1, 9, dtype=np.float64)
    bpf = _harmonics(phase, bpf_orders, 1.5 * np.arange(1, 9) ** -0.7, rng)
    air = _resonance(rng, n, sr, p["air_centre"], 1.2)
    air *= 1 + 0.15 * np.sin(blades * phase)
    machine = 0.35 * _unit(rotor) + 0.6 * _unit(bpf) + _db(rng.uniform(-1, 1)) * air
    reference = _rms(machine)
    if clip.anomaly == "imbalance":  # 1x vibration grows and modulates everything
        depth = rng.uniform(0.5, 0.8)
        low = _harmonics(phase, np.arange(1, 6, dtype=np.float64), np.ones(5), rng)
        boost = 2.0 * _db(_severity(clip)) * reference * _unit(low)
        machine = machine * (1 + depth * np.sin(phase)) + boost
    elif clip.anomaly == "bearing":  # outer-race defect: impulses at BPFO ring the housing
        onsets = _periodic_onsets(rng, n, sr, 3.57 * f_rot, 0.02, rng.uniform(0, 0.05))
        ring = _ringing(n, sr, onsets, rng.uniform(0.6, 1.0, onsets.size), p["housing"], 0.002)
        machine = machine + _db(_severity(clip)) * reference * _unit(ring)
    elif clip.anomaly == "blade_rub":  # extra half-order harmonics of the blade-pass tone
        extra = (np.arange(4, 16) + 0.5) * blades
        rub = _harmonics(phase, extra, np.ones(extra.size), rng)
        machine = machine + _db(_severity(clip)) * reference * _unit(rub)
    return machine, reference


def _pump(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    f_rot = p["f_rot"] * clip.speed * (1 + rng.uniform(-0.01, 0.01))
    if clip.anomaly == "speed_shift":  # slipping drive: shifted rotation frequency
        f_rot *= rng.uniform(1.3, 1.45)
    phase = _phase(f_rot, n, sr)
    orders = np.arange(1, 21, dtype=np.float64)
    motor = _harmonics(phase, orders, orders**-0.6 * rng.uniform(0.8, 1.2, orders.size), rng)
    vane_orders = p["vanes"] * np.arange(1, 11, dtype=np.float64)
    vane = _harmonics(phase, vane_orders, np.arange(1, 11) ** -0.5, rng)
    centre, depth, flow_gain = p["flow_centre"], 0.35, 1.0
    if clip.anomaly == "clogging":  # restricted flow: higher flow tone, stronger pulsation
        centre, depth, flow_gain = centre * rng.uniform(1.6, 2.0), 0.8, _db(3.0)
    pulse = 1 + depth * np.sin(_phase(p["pulse_rate"] * clip.speed, n, sr) + rng.uniform(0, 6))
    flow = _resonance(rng, n, sr, centre, 4.0) * pulse
    machine = (
        0.6 * _unit(motor) + 0.5 * _unit(vane) + 0.6 * flow_gain * _db(rng.uniform(-1, 1)) * flow
    )
    reference = _rms(machine)
    if clip.anomaly == "cavitation":  # collapsing bubbles: broadband crackle bursts
        onsets = _poisson_onsets(rng, n, sr, rng.uniform(25, 45))
        amps = rng.uniform(0.3, 1.0, onsets.size)
        crackle = _ringing(n, sr, onsets, amps, rng.uniform(3000, 5000), 0.0015)
        crackle += 0.5 * _ringing(n, sr, onsets + 40, amps, rng.uniform(5500, 6800), 0.001)
        machine = machine + _db(_severity(clip)) * reference * _unit(crackle)
    return machine, reference


def _slider(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    period = p["stroke"] / clip.speed * (1 + rng.uniform(-0.02, 0.02))
    offset = rng.uniform(0, period)
    motion = _gate(n, sr, period, 0.7, offset, 0.05)
    whine = _harmonics(
        _phase(p["whine"], n, sr), np.arange(1, 5.0), np.array([1, 0.5, 0.3, 0.2]), rng
    )
    slide = _band(rng, n, sr, 300, 2500)
    stops = np.round(((np.arange(int(clip.seconds / period) + 2) + 0.7) * period - offset) * sr)
    click_amps = rng.uniform(0.8, 1.2, stops.size)
    click = _ringing(n, sr, stops, click_amps, p["click"], 0.004)
    click /= _train_rms(1.0 / period, 0.004)
    machine = motion * (0.6 * _unit(whine) + slide) + 0.8 * click
    machine += 0.15 * _coloured(rng, n, sr, 1.0)  # drive idle noise between strokes
    # the expected level, not this clip's: how many strokes fall in the clip must not matter
    reference = float(np.sqrt(np.mean(motion**2) * 1.36 + 0.8**2 + 0.15**2))
    level = _db(_severity(clip)) * reference
    if clip.anomaly == "rattle":  # loose carriage: bursts of impacts while moving
        onsets = _poisson_onsets(rng, n, sr, rng.uniform(60, 120))
        hits = _ringing(n, sr, onsets, rng.uniform(0.2, 1.0, onsets.size), p["rattle"], 0.002)
        machine = machine + level * _unit(hits * motion)
    elif clip.anomaly == "squeal":  # dry rail: a squeal tone with vibrato while moving
        f_sq = rng.uniform(2000, 3500) * (1 + 0.01 * np.sin(2 * np.pi * 6 * np.arange(n) / sr))
        squeal = _harmonics(_phase(f_sq, n, sr), np.array([1.0, 2.0]), np.array([1, 0.4]), rng)
        machine = machine + level * _unit(squeal * motion)
    elif clip.anomaly == "stopper_impact":  # worn end stop: heavy low bounce at each stroke end
        bounce = _ringing(n, sr, stops, click_amps, p["click"] * 0.45, 0.012)
        bounce += 0.6 * _ringing(n, sr, stops + int(0.03 * sr), click_amps, p["click"] * 0.45, 0.01)
        machine = machine + 2.0 * level * _unit(bounce)
    return machine, reference


def _valve(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    period = p["cycle"] / clip.speed * (1 + rng.uniform(-0.02, 0.02))
    offset = rng.uniform(0, period)
    is_open = _gate(n, sr, period, 0.4, offset, 0.01)
    cycles = np.arange(int(clip.seconds / period) + 2) * period - offset
    opens, closes = np.round(cycles * sr), np.round((cycles + 0.4 * period) * sr)
    f_click, decay = p["click"], 0.003
    if clip.anomaly == "seat_wear":  # worn seat: duller, longer clicks
        f_click, decay = f_click * rng.uniform(0.45, 0.6), 0.009
    clicks = _ringing(n, sr, opens, rng.uniform(0.8, 1.2, opens.size), f_click, decay)
    clicks += _ringing(n, sr, closes, rng.uniform(0.8, 1.2, closes.size), f_click * 1.3, decay)
    hiss = _band(rng, n, sr, 600, 3500) * is_open
    hum = _harmonics(_phase(50.0, n, sr), np.arange(1, 5.0), np.array([1, 0.6, 0.3, 0.2]), rng)
    clicks /= _train_rms(2.0 / period, decay)
    machine = clicks + 0.6 * hiss + 0.2 * _unit(hum)
    machine += 0.1 * _coloured(rng, n, sr, 1.0)
    # the expected level, not this clip's: how many clicks fall in the clip must not matter
    reference = float(np.sqrt(1.0 + 0.36 * np.mean(is_open**2) + 0.2**2 + 0.1**2))
    level = _db(_severity(clip)) * reference
    if clip.anomaly == "leak":  # flow through the closed valve: steady high hiss
        machine = machine + level * _band(rng, n, sr, 2000, 7000)
    elif clip.anomaly == "contamination":  # debris: irregular rattling clicks while open
        onsets = _poisson_onsets(rng, n, sr, rng.uniform(30, 60))
        amps = rng.uniform(0.3, 1.0, onsets.size)
        grit = _ringing(n, sr, onsets, amps, p["grit"], 0.0015)
        grit += 0.7 * _ringing(n, sr, onsets + 25, amps[::-1], 0.55 * p["grit"], 0.0015)
        machine = machine + 1.5 * level * _unit(grit * (is_open + 0.3))
    return machine, reference


SYNTHESISERS: dict[str, Callable[[Clip], tuple[np.ndarray, float]]] = {
    "fan": _fan,
    "pump": _pump,
    "slider": _slider,
    "valve": _valve,
}


def _id_number(machine_id: str) -> int:
    digits = "".join(ch for ch in machine_id if ch.isdigit())
    return int(digits) if digits else zlib.crc32(machine_id.encode()) % 100


def machine_params(machine_type: str, machine_id: str, seed: int = 0) -> dict[str, float]:
    """The fixed parameters of one machine (type + id): what makes ids differ."""
    rng = np.random.default_rng([seed, _crc(machine_type), _id_number(machine_id), 1])
    k = _id_number(machine_id) % 8
    if machine_type == "fan":
        return {
            "f_rot": 21.0 + 1.0 * k + rng.uniform(-0.2, 0.2),
            "blades": float(5 + k % 3),
            "air_centre": rng.uniform(600, 1200),
            "housing": rng.uniform(2800, 4200),
        }
    if machine_type == "pump":
        return {
            "f_rot": 24.0 + 0.5 * k + rng.uniform(-0.1, 0.1),
            "vanes": 5.0,
            "flow_centre": rng.uniform(450, 750),
            "pulse_rate": rng.uniform(3.0, 6.0),
        }
    if machine_type == "slider":
        return {
            "stroke": 0.45 + 0.03 * k + rng.uniform(-0.01, 0.01),
            "whine": rng.uniform(280, 480),
            "click": rng.uniform(1400, 2200),
            "rattle": rng.uniform(3500, 5500),
        }
    if machine_type == "valve":
        return {
            "cycle": 0.5 + 0.04 * k + rng.uniform(-0.01, 0.01),
            "click": rng.uniform(1600, 2400),
            "grit": rng.uniform(4000, 6000),
        }
    raise ValueError(f"unknown synthetic machine type {machine_type!r}; known: {MACHINE_TYPES}")


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _background(rng: np.random.Generator, n: int, sr: int) -> np.ndarray:
    """Recorded-like room/factory noise: pink-ish plus rumble, tilt and level drifting."""
    exponent, rumble = rng.uniform(0.8, 1.3), rng.uniform(0.3, 0.7)

    def shape(f: np.ndarray) -> np.ndarray:
        pink = 1.0 / np.maximum(f, 20.0) ** (exponent / 2)
        return pink / pink[1] + rumble / (1.0 + ((f - 80.0) / 60.0) ** 4)

    noise = _spectral_noise(rng, n, sr, shape)
    drift = 1 + 0.2 * np.sin(
        TWO_PI * rng.uniform(0.05, 0.3) * np.arange(n) / sr + rng.uniform(0, 6)
    )
    return _unit(noise * drift)


def synthesise_clip(
    machine_type: str,
    machine_id: str,
    anomaly: str | None,
    *,
    clip_seed: Sequence[int],
    duration_s: float,
    sample_rate: int,
    snr_db: float,
    seed: int = 0,
    speed: float = 1.0,
    channels: int = 1,
) -> np.ndarray:
    """One clip as float64 ``(samples, channels)``, machine RMS fixed, noise at ``snr_db``."""
    rng = np.random.default_rng(list(clip_seed))
    n = int(round(duration_s * sample_rate))
    params = machine_params(machine_type, machine_id, seed)
    clip = Clip(rng, n, sample_rate, params, anomaly, speed)
    synth = SYNTHESISERS.get(machine_type)
    if synth is None:
        raise ValueError(f"unknown synthetic machine type {machine_type!r}; known: {MACHINE_TYPES}")
    gain = MACHINE_RMS * _db(rng.uniform(-1.5, 1.5))
    machine, reference_rms = synth(clip)
    machine *= gain / reference_rms  # the normal machine sits at `gain`; anomalies add to it
    noise_rms = gain / _db(snr_db)
    if channels == 1:
        return (machine + noise_rms * _background(rng, n, sample_rate))[:, None]
    common = _background(rng, n, sample_rate)
    out = np.empty((n, channels))
    for c in range(channels):  # a small array: per-mic delay, gain and own noise
        mic = np.roll(machine, c) * (1.0 - 0.03 * c)
        own = _coloured(rng, n, sample_rate, 1.0)
        out[:, c] = mic + noise_rms * (0.8 * np.roll(common, 7 * c) + 0.6 * own)
    return out


# --------------------------------------------------------------------------- writing
@dataclass(frozen=True)
class PlannedClip:
    """One file to write: where, what, and the seed of its random draws."""

    relpath: str
    machine_type: str
    machine_id: str
    split: str
    label: str
    anomaly: str | None
    index: int
    domain: str = ""
    speed: float = 1.0


def _resolve_counts(
    size: str,
    machine_ids: Sequence[str],
    n_train: int | None,
    n_test_normal: int | None,
    n_test_anomaly: int | None,
) -> tuple[int, int, int]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    preset = SIZES[size]
    default_train = preset.get("n_train") or -(-preset["n_train_per_type"] // len(machine_ids))
    return (
        default_train if n_train is None else n_train,
        preset["n_test_normal"] if n_test_normal is None else n_test_normal,
        preset["n_test_anomaly"] if n_test_anomaly is None else n_test_anomaly,
    )


def _plan_dcase2020(machine_type: str, machine_id: str, counts: tuple[int, int, int]):
    n_train, n_normal, n_anomaly = counts
    kinds = ANOMALY_KINDS[machine_type]
    for i in range(n_train):
        name = f"{machine_type}/train/normal_{machine_id}_{i:08d}.wav"
        yield PlannedClip(name, machine_type, machine_id, "train", "normal", None, i)
    for i in range(n_normal):
        name = f"{machine_type}/test/normal_{machine_id}_{i:08d}.wav"
        yield PlannedClip(name, machine_type, machine_id, "test", "normal", None, i)
    for i in range(n_anomaly):
        name = f"{machine_type}/test/anomaly_{machine_id}_{i:08d}.wav"
        yield PlannedClip(
            name, machine_type, machine_id, "test", "anomaly", kinds[i % len(kinds)], i
        )


def _plan_mimii(machine_type: str, machine_id: str, counts: tuple[int, int, int], snr_db: float):
    n_train, n_normal, n_anomaly = counts
    kinds = ANOMALY_KINDS[machine_type]
    top = f"{int(round(snr_db))}_dB_{machine_type}/{machine_type}/{machine_id}"
    for i in range(n_train + n_normal):  # the reader makes the train/test split
        split = ""  # read_manifest draws the MIMII train/test split
        yield PlannedClip(
            f"{top}/normal/{i:08d}.wav", machine_type, machine_id, split, "normal", None, i
        )
    for i in range(n_anomaly):
        name = f"{top}/abnormal/{i:08d}.wav"
        yield PlannedClip(
            name, machine_type, machine_id, "test", "anomaly", kinds[i % len(kinds)], i
        )


TARGET_SPEED = 1.1  # the synthetic "target domain": the machine runs 10 % faster


def _plan_dcase2021(machine_type: str, machine_id: str, counts: tuple[int, int, int]):
    """DCASE 2022+-style: source/target domains, speed attribute in the name and the CSV."""
    n_train, n_normal, n_anomaly = counts
    kinds = ANOMALY_KINDS[machine_type]
    section = f"section_{_id_number(machine_id):02d}"
    n_target_train = max(1, n_train // 10) if n_train > 1 else 0
    plan = [("train", "normal", i, i >= n_train - n_target_train) for i in range(n_train)]
    plan += [("test", "normal", i, i % 2 == 1) for i in range(n_normal)]
    plan += [("test", "anomaly", i, i % 2 == 1) for i in range(n_anomaly)]
    counters: dict[tuple[str, str, str], int] = {}
    for split, label, i, target in plan:
        domain = "target" if target else "source"
        number = counters.setdefault((domain, split, label), 0)
        counters[(domain, split, label)] = number + 1
        speed = TARGET_SPEED if target else 1.0
        attrs = f"spd_{int(round(speed * 100))}"
        name = f"{section}_{domain}_{split}_{label}_{number:04d}_{attrs}.wav"
        kind = kinds[i % len(kinds)] if label == "anomaly" else None
        yield PlannedClip(
            f"{machine_type}/{split}/{name}",
            machine_type,
            machine_id,
            split,
            label,
            kind,
            i,
            domain,
            speed,
        )


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def _write_attribute_csvs(root: Path, planned: list[PlannedClip]) -> None:
    """DCASE 2023-style ``<type>/attributes_XX.csv`` (file_name, d1p, d1v)."""
    rows: dict[tuple[str, str], list[list[str]]] = {}
    for clip in planned:
        key = (clip.machine_type, f"{_id_number(clip.machine_id):02d}")
        speed = str(int(round(clip.speed * 100)))
        rows.setdefault(key, []).append([clip.relpath, "spd", speed])
    for (machine_type, section), table in rows.items():
        with (root / machine_type / f"attributes_{section}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["file_name", "d1p", "d1v"])
            writer.writerows(table)


def _write_ground_truth(root: Path, planned: list[PlannedClip]) -> None:
    with (root / "ground_truth.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(
            ["path", "machine_type", "machine_id", "split", "label", "domain", "anomaly_kind"]
        )
        for clip in planned:
            writer.writerow(
                [
                    clip.relpath,
                    clip.machine_type,
                    clip.machine_id,
                    clip.split,
                    clip.label,
                    clip.domain,
                    clip.anomaly or "",
                ]
            )


def generate_dataset(
    root: str | Path,
    *,
    layout: str = "dcase2020",
    machine_types: Sequence[str] = MACHINE_TYPES,
    machine_ids: Sequence[str] = ("id_00", "id_02", "id_04"),
    n_train: int | None = None,
    n_test_normal: int | None = None,
    n_test_anomaly: int | None = None,
    duration_s: float = 10.0,
    sample_rate: int = 16000,
    snr_db: float = 6.0,
    seed: int = 0,
    size: str = "small",
) -> Path:
    """Write a synthetic dataset under ``root`` and return ``root`` (for ``read_manifest``).

    ``layout``: ``"dcase2020"`` (``<type>/{train,test}/{normal,anomaly}_id_XX_N.wav``),
    ``"mimii"`` (``<snr>_dB_<type>/<type>/id_XX/{normal,abnormal}/N.wav``, 8 channels,
    WAVE_FORMAT_EXTENSIBLE) or ``"dcase2021"`` (section names, source/target domains,
    ``attributes_XX.csv``). Counts left as ``None`` come from ``size`` ("small": 40 train,
    10 + 10 test per id; "large": about 1000 train clips per type). ``ground_truth.csv``
    at the root records each clip's anomaly kind. Same arguments -> byte-identical files.
    """
    if layout not in SYNTHETIC_LAYOUTS:
        raise ValueError(f"layout must be one of {SYNTHETIC_LAYOUTS}, got {layout!r}")
    unknown = [t for t in machine_types if t not in SYNTHESISERS]
    if unknown:
        raise ValueError(f"unknown synthetic machine types {unknown}; known: {MACHINE_TYPES}")
    counts = _resolve_counts(size, machine_ids, n_train, n_test_normal, n_test_anomaly)
    root = Path(root)
    planned: list[PlannedClip] = []
    for machine_type in machine_types:
        for machine_id in machine_ids:
            if layout == "mimii":
                planned += _plan_mimii(machine_type, machine_id, counts, snr_db)
            elif layout == "dcase2021":
                planned += _plan_dcase2021(machine_type, machine_id, counts)
            else:
                planned += _plan_dcase2020(machine_type, machine_id, counts)
    channels = MIMII_CHANNELS if layout == "mimii" else 1
    progress = tqdm(planned, desc=f"synthetic clips -> {root}", unit="clip", disable=None)
    for clip in progress:
        audio = synthesise_clip(
            clip.machine_type,
            clip.machine_id,
            clip.anomaly,
            clip_seed=_clip_seed(seed, clip),
            duration_s=duration_s,
            sample_rate=sample_rate,
            snr_db=snr_db,
            seed=seed,
            speed=clip.speed,
            channels=channels,
        )
        path = root / clip.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        wav_format = "WAVEX" if layout == "mimii" else "WAV"
        buffer = io.BytesIO()  # one write per file: much faster than soundfile's own flushes
        sf.write(buffer, _to_pcm16(audio), sample_rate, subtype="PCM_16", format=wav_format)
        path.write_bytes(buffer.getvalue())
    if layout == "dcase2021":
        _write_attribute_csvs(root, planned)
    _write_ground_truth(root, planned)
    return root


def _clip_seed(seed: int, clip: PlannedClip) -> list[int]:
    """Seed of one clip: depends on what the clip is, not on how many others there are."""
    what = f"{clip.machine_type}|{clip.machine_id}|{clip.split}|{clip.label}|{clip.domain}"
    return [seed, _crc(what), clip.index]


# --------------------------------------------------------------------------- CLI
SYNTHETIC_ROOT_PREFIX = "synthetic"


def generate_if_missing(root: str | Path, **kwargs: object) -> bool:
    """Write a synthetic dataset at ``root`` if it is missing and its folder name starts
    with ``synthetic`` (``data/synthetic``, ``data/synthetic_mimii``); return whether it did.

    Any other missing root is left alone, so a mistyped path to real data fails with
    ``DatasetNotFoundError`` instead of silently training on synthetic sounds.
    """
    root = Path(root)
    if root.exists() or not root.name.startswith(SYNTHETIC_ROOT_PREFIX):
        return False
    logging.getLogger(__name__).warning(
        "dataset root %s does not exist: writing a synthetic dataset (%s) there",
        root,
        ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults",
    )
    partial = root.with_name(root.name + ".partial")  # renamed only once complete, so an
    shutil.rmtree(partial, ignore_errors=True)  # interrupted run never leaves a half tree
    generate_dataset(partial, **kwargs)
    partial.rename(root)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m aad.data.synthetic --root data/synthetic``: write and summarise."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="data/synthetic")
    parser.add_argument("--layout", default="dcase2020", choices=SYNTHETIC_LAYOUTS)
    parser.add_argument("--size", default="small", choices=tuple(SIZES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--snr-db", type=float, default=6.0)
    parser.add_argument("--machine-types", nargs="+", default=list(MACHINE_TYPES))
    args = parser.parse_args(argv)
    from aad.data.readers import read_manifest

    root = generate_dataset(
        args.root,
        layout=args.layout,
        machine_types=args.machine_types,
        duration_s=args.duration,
        snr_db=args.snr_db,
        seed=args.seed,
        size=args.size,
    )
    print(read_manifest(root, args.layout, seed=args.seed).summary())


if __name__ == "__main__":
    main()
