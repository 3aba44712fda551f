"""The four synthetic machines (fan, pump, slider, valve) and their faults.

Each model turns a :class:`Clip` into ``(machine, reference_rms)``: the machine sound with
any fault already in it, and the RMS the normal machine has, which the caller scales to the
clip's level. ``Clip.spread`` widens how much normal clips vary (speed, level, harmonic
balance); ``Clip.severity_db`` and ``Clip.fault_scale`` set how loud additive faults are and
how far structural faults (speed shift, clogging, worn seat, imbalance) move the sound.
At their defaults every draw is the original easy set's, so its files stay byte-identical.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aad.data.synthetic.signals import (
    band_noise,
    coloured,
    db,
    gate,
    harmonics,
    periodic_onsets,
    phase_track,
    poisson_onsets,
    resonance,
    ringing,
    rms,
    spread,
    toward,
    train_rms,
    unit,
)

MACHINE_TYPES = ("fan", "pump", "slider", "valve")
ANOMALY_KINDS: dict[str, tuple[str, ...]] = {
    "fan": ("imbalance", "bearing", "blade_rub"),
    "pump": ("clogging", "cavitation", "speed_shift"),
    "slider": ("rattle", "squeal", "stopper_impact"),
    "valve": ("leak", "contamination", "seat_wear"),
}


@dataclass
class Clip:
    """What a synthesiser needs to know about one clip."""

    rng: np.random.Generator
    n: int
    sr: int
    params: dict[str, float]
    anomaly: str | None
    speed: float = 1.0  # operating condition (DCASE 2021 "target domain" changes it)
    spread: float = 1.0  # widens every normal-variation range (1 = the easy set)
    severity_db: tuple[float, float] = (-6.0, 0.0)  # additive fault level re the machine
    fault_scale: float = 1.0  # share of the easy set's change kept by structural faults

    @property
    def seconds(self) -> float:
        return self.n / self.sr

    def jitter(self, lo: float, hi: float, size: int | None = None) -> np.ndarray | float:
        """A normal-variation draw from ``(lo, hi)`` widened by ``spread``."""
        return self.rng.uniform(*spread(lo, hi, self.spread), size)


def _severity(clip: Clip) -> float:
    """Level of an additive anomaly relative to the machine, in dB."""
    return float(clip.rng.uniform(*clip.severity_db))


def _fan(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    f_rot = p["f_rot"] * clip.speed * (1 + clip.jitter(-0.015, 0.015))
    wobble = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(0.1, 0.4) * np.arange(n) / sr)
    phase = phase_track(f_rot * wobble, n, sr)
    orders = np.arange(1, 13, dtype=np.float64)
    rotor = harmonics(phase, orders, orders**-1.0 * db(clip.jitter(-1, 1)), rng)
    blades = p["blades"]
    bpf_orders = blades * np.arange(1, 9, dtype=np.float64)
    bpf = harmonics(phase, bpf_orders, 1.5 * np.arange(1, 9) ** -0.7, rng)
    air = resonance(rng, n, sr, p["air_centre"], 1.2)
    air *= 1 + 0.15 * np.sin(blades * phase)
    machine = 0.35 * unit(rotor) + 0.6 * unit(bpf) + db(clip.jitter(-1, 1)) * air
    reference = rms(machine)
    if clip.anomaly == "imbalance":  # 1x vibration grows and modulates everything
        depth = rng.uniform(0.5, 0.8) * clip.fault_scale
        low = harmonics(phase, np.arange(1, 6, dtype=np.float64), np.ones(5), rng)
        boost = 2.0 * db(_severity(clip)) * reference * unit(low)
        machine = machine * (1 + depth * np.sin(phase)) + boost
    elif clip.anomaly == "bearing":  # outer-race defect: impulses at BPFO ring the housing
        onsets = periodic_onsets(rng, n, sr, 3.57 * f_rot, 0.02, rng.uniform(0, 0.05))
        ring = ringing(n, sr, onsets, rng.uniform(0.6, 1.0, onsets.size), p["housing"], 0.002)
        machine = machine + db(_severity(clip)) * reference * unit(ring)
    elif clip.anomaly == "blade_rub":  # extra half-order harmonics of the blade-pass tone
        extra = (np.arange(4, 16) + 0.5) * blades
        rub = harmonics(phase, extra, np.ones(extra.size), rng)
        machine = machine + db(_severity(clip)) * reference * unit(rub)
    return machine, reference


def _pump(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    f_rot = p["f_rot"] * clip.speed * (1 + clip.jitter(-0.01, 0.01))
    if clip.anomaly == "speed_shift":  # slipping drive: shifted rotation frequency
        f_rot *= toward(rng.uniform(1.3, 1.45), 1.0, clip.fault_scale)
    phase = phase_track(f_rot, n, sr)
    orders = np.arange(1, 21, dtype=np.float64)
    motor = harmonics(phase, orders, orders**-0.6 * clip.jitter(0.8, 1.2, orders.size), rng)
    vane_orders = p["vanes"] * np.arange(1, 11, dtype=np.float64)
    vane = harmonics(phase, vane_orders, np.arange(1, 11) ** -0.5, rng)
    centre, depth, flow_gain = p["flow_centre"], 0.35, 1.0
    if clip.anomaly == "clogging":  # restricted flow: higher flow tone, stronger pulsation
        keep = clip.fault_scale
        centre *= toward(rng.uniform(1.6, 2.0), 1.0, keep)
        depth, flow_gain = toward(0.8, 0.35, keep), db(3.0 * keep)
    pulse = 1 + depth * np.sin(phase_track(p["pulse_rate"] * clip.speed, n, sr) + rng.uniform(0, 6))
    flow = resonance(rng, n, sr, centre, 4.0) * pulse
    machine = 0.6 * unit(motor) + 0.5 * unit(vane) + 0.6 * flow_gain * db(clip.jitter(-1, 1)) * flow
    reference = rms(machine)
    if clip.anomaly == "cavitation":  # collapsing bubbles: broadband crackle bursts
        onsets = poisson_onsets(rng, n, sr, rng.uniform(25, 45))
        amps = rng.uniform(0.3, 1.0, onsets.size)
        crackle = ringing(n, sr, onsets, amps, rng.uniform(3000, 5000), 0.0015)
        crackle += 0.5 * ringing(n, sr, onsets + 40, amps, rng.uniform(5500, 6800), 0.001)
        machine = machine + db(_severity(clip)) * reference * unit(crackle)
    return machine, reference


def _slider(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    period = p["stroke"] / clip.speed * (1 + clip.jitter(-0.02, 0.02))
    offset = rng.uniform(0, period)
    motion = gate(n, sr, period, 0.7, offset, 0.05)
    whine = harmonics(
        phase_track(p["whine"], n, sr), np.arange(1, 5.0), np.array([1, 0.5, 0.3, 0.2]), rng
    )
    slide = band_noise(rng, n, sr, 300, 2500)
    stops = np.round(((np.arange(int(clip.seconds / period) + 2) + 0.7) * period - offset) * sr)
    click_amps = clip.jitter(0.8, 1.2, stops.size)
    click = ringing(n, sr, stops, click_amps, p["click"], 0.004)
    click /= train_rms(1.0 / period, 0.004)
    machine = motion * (0.6 * unit(whine) + slide) + 0.8 * click
    machine += 0.15 * coloured(rng, n, sr, 1.0)  # drive idle noise between strokes
    # the expected level, not this clip's: how many strokes fall in the clip must not matter
    reference = float(np.sqrt(np.mean(motion**2) * 1.36 + 0.8**2 + 0.15**2))
    level = db(_severity(clip)) * reference
    if clip.anomaly == "rattle":  # loose carriage: bursts of impacts while moving
        onsets = poisson_onsets(rng, n, sr, rng.uniform(60, 120))
        hits = ringing(n, sr, onsets, rng.uniform(0.2, 1.0, onsets.size), p["rattle"], 0.002)
        machine = machine + level * unit(hits * motion)
    elif clip.anomaly == "squeal":  # dry rail: a squeal tone with vibrato while moving
        f_sq = rng.uniform(2000, 3500) * (1 + 0.01 * np.sin(2 * np.pi * 6 * np.arange(n) / sr))
        squeal = harmonics(phase_track(f_sq, n, sr), np.array([1.0, 2.0]), np.array([1, 0.4]), rng)
        machine = machine + level * unit(squeal * motion)
    elif clip.anomaly == "stopper_impact":  # worn end stop: heavy low bounce at each stroke end
        f_bounce = p["click"] * toward(0.45, 1.0, clip.fault_scale)
        bounce = ringing(n, sr, stops, click_amps, f_bounce, 0.012)
        bounce += 0.6 * ringing(n, sr, stops + int(0.03 * sr), click_amps, f_bounce, 0.01)
        machine = machine + 2.0 * level * unit(bounce)
    return machine, reference


def _valve(clip: Clip) -> tuple[np.ndarray, float]:
    rng, n, sr, p = clip.rng, clip.n, clip.sr, clip.params
    period = p["cycle"] / clip.speed * (1 + clip.jitter(-0.02, 0.02))
    offset = rng.uniform(0, period)
    is_open = gate(n, sr, period, 0.4, offset, 0.01)
    cycles = np.arange(int(clip.seconds / period) + 2) * period - offset
    opens, closes = np.round(cycles * sr), np.round((cycles + 0.4 * period) * sr)
    f_click, decay = p["click"], 0.003
    if clip.anomaly == "seat_wear":  # worn seat: duller, longer clicks
        keep = clip.fault_scale
        f_click = f_click * toward(rng.uniform(0.45, 0.6), 1.0, keep)
        decay = toward(0.009, 0.003, keep)
    clicks = ringing(n, sr, opens, clip.jitter(0.8, 1.2, opens.size), f_click, decay)
    clicks += ringing(n, sr, closes, clip.jitter(0.8, 1.2, closes.size), f_click * 1.3, decay)
    hiss = band_noise(rng, n, sr, 600, 3500) * is_open
    hum = harmonics(phase_track(50.0, n, sr), np.arange(1, 5.0), np.array([1, 0.6, 0.3, 0.2]), rng)
    clicks /= train_rms(2.0 / period, decay)
    machine = clicks + 0.6 * hiss + 0.2 * unit(hum)
    machine += 0.1 * coloured(rng, n, sr, 1.0)
    # the expected level, not this clip's: how many clicks fall in the clip must not matter
    reference = float(np.sqrt(1.0 + 0.36 * np.mean(is_open**2) + 0.2**2 + 0.1**2))
    level = db(_severity(clip)) * reference
    if clip.anomaly == "leak":  # flow through the closed valve: steady high hiss
        machine = machine + level * band_noise(rng, n, sr, 2000, 7000)
    elif clip.anomaly == "contamination":  # debris: irregular rattling clicks while open
        onsets = poisson_onsets(rng, n, sr, rng.uniform(30, 60))
        amps = rng.uniform(0.3, 1.0, onsets.size)
        grit = ringing(n, sr, onsets, amps, p["grit"], 0.0015)
        grit += 0.7 * ringing(n, sr, onsets + 25, amps[::-1], 0.55 * p["grit"], 0.0015)
        machine = machine + 1.5 * level * unit(grit * (is_open + 0.3))
    return machine, reference


SYNTHESISERS: dict[str, Callable[[Clip], tuple[np.ndarray, float]]] = {
    "fan": _fan,
    "pump": _pump,
    "slider": _slider,
    "valve": _valve,
}


def crc(text: str) -> int:
    return zlib.crc32(text.encode())


def id_number(machine_id: str) -> int:
    """``"id_04"`` -> 4 (a CRC for ids without digits)."""
    digits = "".join(ch for ch in machine_id if ch.isdigit())
    return int(digits) if digits else zlib.crc32(machine_id.encode()) % 100


def machine_params(machine_type: str, machine_id: str, seed: int = 0) -> dict[str, float]:
    """The fixed parameters of one machine (type + id): what makes ids differ."""
    rng = np.random.default_rng([seed, crc(machine_type), id_number(machine_id), 1])
    k = id_number(machine_id) % 8
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
