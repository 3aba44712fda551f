"""One synthetic clip: a machine (:mod:`.machines`) at a fixed level in recorded-like
background noise, at the SNR and spread of a difficulty profile."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from aad.data.synthetic.machines import MACHINE_TYPES, SYNTHESISERS, Clip, machine_params
from aad.data.synthetic.signals import TWO_PI, coloured, db, spectral_noise, spread, unit

MACHINE_RMS = 0.05  # about -26 dBFS, leaves head room for impulsive anomalies


@dataclass(frozen=True)
class Difficulty:
    """How hard a synthetic set is to score.

    - ``snr_db``: default machine-to-background level (per clip +- ``snr_spread_db``).
    - ``severity_db``: level range of additive faults (bearing ringing, leaks, rattles...)
      relative to the machine; ``severity_offsets_db`` moves it for fault kinds that stand
      out more than their level says (tones, impacts).
    - ``fault_scale``: share of the easy set's change kept by structural faults (speed
      shift, clogging, worn seat, imbalance, a lower stopper bounce); ``fault_scales`` per
      kind, as kinds differ in how audible the same change is.
    - ``spread``: widens every normal-variation range (speed, level, harmonic balance,
      background colour): 1 is the easy set.
    """

    snr_db: float
    severity_db: tuple[float, float]
    fault_scale: float = 1.0
    fault_scales: dict[str, float] = field(default_factory=dict)
    severity_offsets_db: dict[str, float] = field(default_factory=dict)
    spread: float = 1.0
    snr_spread_db: float = 0.0

    def scale_for(self, anomaly: str | None) -> float:
        """``fault_scale`` of one fault kind."""
        return self.fault_scales.get(anomaly or "", self.fault_scale)

    def severity_for(self, anomaly: str | None) -> tuple[float, float]:
        """``severity_db`` of one additive fault kind."""
        offset = self.severity_offsets_db.get(anomaly or "")
        if offset is None:
            return self.severity_db
        return self.severity_db[0] + offset, self.severity_db[1] + offset


DIFFICULTIES: dict[str, Difficulty] = {
    "easy": Difficulty(snr_db=6.0, severity_db=(-6.0, 0.0)),
    "hard": Difficulty(
        snr_db=-6.0,
        severity_db=(-20.0, -10.0),
        fault_scale=0.5,
        fault_scales={"imbalance": 1.0},
        severity_offsets_db={"blade_rub": 6.0, "bearing": 3.0},  # low in the noise otherwise
        spread=1.5,
        snr_spread_db=3.0,
    ),
}


def difficulty_profile(name: str) -> Difficulty:
    """The :class:`Difficulty` called ``name`` ("easy" or "hard")."""
    if name not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {tuple(DIFFICULTIES)}, got {name!r}")
    return DIFFICULTIES[name]


def background(rng: np.random.Generator, n: int, sr: int, spread_factor: float = 1.0) -> np.ndarray:
    """Recorded-like room/factory noise: pink-ish plus rumble, tilt and level drifting."""
    exponent = rng.uniform(*spread(0.8, 1.3, spread_factor))
    rumble = rng.uniform(*spread(0.3, 0.7, min(spread_factor, 1.7)))  # stays positive

    def shape(f: np.ndarray) -> np.ndarray:
        pink = 1.0 / np.maximum(f, 20.0) ** (exponent / 2)
        return pink / pink[1] + rumble / (1.0 + ((f - 80.0) / 60.0) ** 4)

    noise = spectral_noise(rng, n, sr, shape)
    drift = 1 + 0.2 * np.sin(
        TWO_PI * rng.uniform(0.05, 0.3) * np.arange(n) / sr + rng.uniform(0, 6)
    )
    return unit(noise * drift)


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
    difficulty: str = "easy",
) -> np.ndarray:
    """One clip as float64 ``(samples, channels)``, machine RMS fixed, noise at ``snr_db``."""
    profile = difficulty_profile(difficulty)
    rng = np.random.default_rng(list(clip_seed))
    n = int(round(duration_s * sample_rate))
    params = machine_params(machine_type, machine_id, seed)
    clip = Clip(rng, n, sample_rate, params, anomaly, speed, profile.spread)
    clip.severity_db, clip.fault_scale = profile.severity_for(anomaly), profile.scale_for(anomaly)
    synth = SYNTHESISERS.get(machine_type)
    if synth is None:
        raise ValueError(f"unknown synthetic machine type {machine_type!r}; known: {MACHINE_TYPES}")
    gain = MACHINE_RMS * db(clip.jitter(-1.5, 1.5))
    machine, reference_rms = synth(clip)
    machine *= gain / reference_rms  # the normal machine sits at `gain`; anomalies add to it
    if profile.snr_spread_db:  # no draw at all in the easy set: its files stay identical
        snr_db = snr_db + rng.uniform(-profile.snr_spread_db, profile.snr_spread_db)
    noise_rms = gain / db(snr_db)
    if channels == 1:
        return (machine + noise_rms * background(rng, n, sample_rate, profile.spread))[:, None]
    common = background(rng, n, sample_rate, profile.spread)
    out = np.empty((n, channels))
    for c in range(channels):  # a small array: per-mic delay, gain and own noise
        mic = np.roll(machine, c) * (1.0 - 0.03 * c)
        own = coloured(rng, n, sample_rate, 1.0)
        out[:, c] = mic + noise_rms * (0.8 * np.roll(common, 7 * c) + 0.6 * own)
    return out
