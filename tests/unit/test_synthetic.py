"""The synthetic generator: layouts, determinism, ground truth and separable anomalies."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aad.data.readers import read_manifest
from aad.data.synthetic import ANOMALY_KINDS, generate_dataset, main

TINY = {
    "machine_types": ("fan", "pump"),
    "machine_ids": ("id_00",),
    "n_train": 3,
    "n_test_normal": 2,
    "n_test_anomaly": 3,
    "duration_s": 0.25,
}


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = _tree_bytes(generate_dataset(tmp_path / "a", seed=3, **TINY))
    second = _tree_bytes(generate_dataset(tmp_path / "b", seed=3, **TINY))
    other = _tree_bytes(generate_dataset(tmp_path / "c", seed=4, **TINY))
    assert len(first) == 2 * 8 + 1  # clips + ground_truth.csv
    assert first == second
    assert first.keys() == other.keys()
    wavs = [k for k in first if k.endswith(".wav")]
    assert all(first[k] != other[k] for k in wavs)


def test_dcase2020_files_and_ground_truth(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, sample_rate=8000, **TINY)
    manifest = read_manifest(root)
    assert len(manifest) == 16
    info = sf.info(manifest[0].path)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (8000, 1, 2000, "PCM_16")
    with (root / "ground_truth.csv").open() as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    assert len(rows) == 16
    for record in manifest:
        row = rows[str(Path(record.path).relative_to(root.absolute()))]
        assert (row["label"], row["machine_type"]) == (record.label, record.machine_type)
        if record.label == "anomaly":
            assert row["anomaly_kind"] in ANOMALY_KINDS[record.machine_type]
        else:
            assert row["anomaly_kind"] == ""
    kinds = {row["anomaly_kind"] for row in rows.values() if row["machine_type"] == "fan"}
    assert kinds == {"", *ANOMALY_KINDS["fan"]}


def test_mimii_layout_is_eight_channel_extensible(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, layout="mimii", snr_db=-6, **TINY)
    path = root / "-6_dB_fan" / "fan" / "id_00" / "abnormal" / "00000000.wav"
    info = sf.info(str(path))
    assert (info.channels, info.format, info.subtype, info.samplerate) == (
        8,
        "WAVEX",
        "PCM_16",
        16000,
    )
    data, _ = sf.read(str(path))
    assert not np.allclose(data[:, 0], data[:, 7])  # the mics differ


def test_normal_clips_vary_but_stay_in_family(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, **{**TINY, "machine_types": ("fan",)})
    a, _ = sf.read(str(root / "fan/train/normal_id_00_00000000.wav"))
    b, _ = sf.read(str(root / "fan/train/normal_id_00_00000001.wav"))
    assert not np.allclose(a, b)
    assert 0.5 < np.std(a) / np.std(b) < 2.0


def _band_embedding(path: str) -> np.ndarray:
    """Mean and std over frames of 32 log band energies (a cheap log-mel stand-in)."""
    audio, _ = sf.read(path)
    frames = np.lib.stride_tricks.sliding_window_view(audio, 1024)[::512] * np.hanning(1024)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    edges = np.unique(np.geomspace(2, power.shape[1], 33).astype(int))
    bands = np.log(np.add.reduceat(power, edges[:-1], axis=1) + 1e-10)
    return np.concatenate([bands.mean(0), bands.std(0)])


def _auc(normal_scores: np.ndarray, anomaly_scores: np.ndarray) -> float:
    greater = (anomaly_scores[:, None] > normal_scores[None, :]).mean()
    ties = (anomaly_scores[:, None] == normal_scores[None, :]).mean()
    return float(greater + 0.5 * ties)


def test_anomalies_are_separable_from_normal(tmp_path: Path) -> None:
    root = generate_dataset(
        tmp_path,
        machine_ids=("id_00", "id_02"),
        n_train=10,
        n_test_normal=6,
        n_test_anomaly=6,
        duration_s=1.0,
        snr_db=0.0,
    )
    manifest = read_manifest(root)
    for machine_type in manifest.machine_types:
        subset = manifest.filter(machine_type=machine_type)
        train = np.stack([_band_embedding(r.path) for r in subset.filter(split="train")])
        mean, std = train.mean(0), train.std(0) + 1e-6

        def score(records, mean=mean, std=std) -> np.ndarray:
            z = (np.stack([_band_embedding(r.path) for r in records]) - mean) / std
            return np.sqrt((z**2).mean(1))

        normal = score(subset.filter(split="test", label="normal"))
        anomaly = score(subset.filter(split="test", label="anomaly"))
        assert _auc(normal, anomaly) >= 0.9, machine_type


def test_rejects_unknown_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown synthetic machine types"):
        generate_dataset(tmp_path, machine_types=("gearbox",))
    with pytest.raises(ValueError, match="layout must be one of"):
        generate_dataset(tmp_path, layout="dcase2030")
    with pytest.raises(ValueError, match="size must be one of"):
        generate_dataset(tmp_path, size="huge")


def test_cli_writes_and_prints_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    main(["--root", str(tmp_path / "cli"), "--duration", "0.1", "--machine-types", "valve"])
    out = capsys.readouterr().out
    assert "machine_type" in out and "train_normal" in out
    assert "valve         id_00                   40          10           10" in out
    assert "180 clips (dcase2020)" in out
