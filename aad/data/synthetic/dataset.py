"""Write a synthetic dataset: plan the files, synthesise each clip, write WAVs and CSVs."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm.auto import tqdm

from aad.data.synthetic.clips import difficulty_profile, synthesise_clip
from aad.data.synthetic.machines import MACHINE_TYPES, SYNTHESISERS, id_number
from aad.data.synthetic.plan import (
    SYNTHETIC_LAYOUTS,
    PlannedClip,
    clip_seed,
    plan_clips,
    resolve_counts,
)

MIMII_CHANNELS = 8


def _to_pcm16(audio: np.ndarray) -> np.ndarray:
    return np.clip(np.round(audio * 32767.0), -32768, 32767).astype(np.int16)


def _write_attribute_csvs(root: Path, planned: list[PlannedClip]) -> None:
    """DCASE 2023-style ``<type>/attributes_XX.csv`` (file_name, d1p, d1v)."""
    rows: dict[tuple[str, str], list[list[str]]] = {}
    for clip in planned:
        key = (clip.machine_type, f"{id_number(clip.machine_id):02d}")
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


def write_wav(path: Path, audio: np.ndarray, sample_rate: int, wav_format: str) -> None:
    """One 16-bit WAV, written in one go (much faster than soundfile's own flushes)."""
    buffer = io.BytesIO()
    sf.write(buffer, _to_pcm16(audio), sample_rate, subtype="PCM_16", format=wav_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())


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
    snr_db: float | None = None,
    seed: int = 0,
    size: str = "small",
    difficulty: str = "easy",
) -> Path:
    """Write a synthetic dataset under ``root`` and return ``root`` (for ``read_manifest``).

    ``layout``: ``"dcase2020"`` (``<type>/{train,test}/{normal,anomaly}_id_XX_N.wav``),
    ``"mimii"`` (``<snr>_dB_<type>/<type>/id_XX/{normal,abnormal}/N.wav``, 8 channels,
    WAVE_FORMAT_EXTENSIBLE) or ``"dcase2021"`` (section names, source/target domains,
    ``attributes_XX.csv``). Counts left as ``None`` come from ``size`` ("small": 40 train,
    10 + 10 test per id; "large": about 1000 train clips per type). ``difficulty``:
    ``"easy"`` (SNR 6 dB, faults 0-6 dB under the machine) or ``"hard"`` (SNR -6 dB, faults
    10-20 dB under, subtler structural faults, normal clips spread wider); ``snr_db``
    (``None``: the difficulty's) overrides its SNR. ``ground_truth.csv`` at the root records
    each clip's anomaly kind. Same arguments -> byte-identical files. Writes in place: see
    :func:`aad.data.synthetic.write_atomically` for a root that appears only when complete.
    """
    if layout not in SYNTHETIC_LAYOUTS:
        raise ValueError(f"layout must be one of {SYNTHETIC_LAYOUTS}, got {layout!r}")
    unknown = [t for t in machine_types if t not in SYNTHESISERS]
    if unknown:
        raise ValueError(f"unknown synthetic machine types {unknown}; known: {MACHINE_TYPES}")
    profile = difficulty_profile(difficulty)
    snr_db = profile.snr_db if snr_db is None else snr_db
    counts = resolve_counts(size, machine_ids, n_train, n_test_normal, n_test_anomaly)
    root = Path(root)
    planned = plan_clips(layout, machine_types, machine_ids, counts, snr_db)
    channels = MIMII_CHANNELS if layout == "mimii" else 1
    wav_format = "WAVEX" if layout == "mimii" else "WAV"
    progress = tqdm(planned, desc=f"synthetic clips -> {root}", unit="clip", disable=None)
    for clip in progress:
        audio = synthesise_clip(
            clip.machine_type,
            clip.machine_id,
            clip.anomaly,
            clip_seed=clip_seed(seed, clip),
            duration_s=duration_s,
            sample_rate=sample_rate,
            snr_db=snr_db,
            seed=seed,
            speed=clip.speed,
            channels=channels,
            difficulty=difficulty,
        )
        write_wav(root / clip.relpath, audio, sample_rate, wav_format)
    if layout == "dcase2021":
        _write_attribute_csvs(root, planned)
    _write_ground_truth(root, planned)
    return root
