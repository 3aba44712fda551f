"""The synthetic generator: layouts, determinism, ground truth and separable anomalies."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

import aad.data.synthetic.dataset as synthetic_dataset
from aad.data.readers import read_manifest
from aad.data.synthetic import ANOMALY_KINDS, generate_dataset, main, write_atomically

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


# Files written by the generator before it became a package (seed 1, 2 s clips): the easy
# set must stay byte-identical, anomalies with structural changes (imbalance, clogging,
# stopper impact, seat wear) included.
EASY_SHA256 = {
    "fan/test/anomaly_id_00_00000000.wav": "59248f7d6b10ac07a21d9f95857649a540e4ed02e0c96d8575d876807fd9f6db",  # noqa: E501
    "pump/test/anomaly_id_00_00000000.wav": "bdae2be2b5a7d581e2ea3c9b11869d47b46a665158ac2de9bfb249847aaeab19",  # noqa: E501
    "slider/test/anomaly_id_03_00000002.wav": "05a5c6bdae6abcfdb345f8d32ce905c0277a25ba62f5068863b74a6d82a1c514",  # noqa: E501
    "valve/test/anomaly_id_00_00000002.wav": "eb9fde6cd02784f2c7b7f7e3935c26fe75f7e84d72ff8dad60fad8b9fae07709",  # noqa: E501
    "valve/train/normal_id_00_00000000.wav": "4ee42c0db7c434f0d4d841496ef878b05c84e6ec1e1d03ac82dca617c8725b9a",  # noqa: E501
}  # fmt: skip
PINNED = {"machine_ids": ("id_00", "id_03"), "n_train": 1, "n_test_normal": 0, "n_test_anomaly": 3}


def test_easy_set_is_byte_identical_to_the_original_generator(tmp_path: Path) -> None:
    root = generate_dataset(tmp_path, seed=1, duration_s=2.0, **PINNED)
    for name, digest in EASY_SHA256.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name


def test_hard_set_is_deterministic_noisier_and_differs_from_easy(tmp_path: Path) -> None:
    hard = _tree_bytes(generate_dataset(tmp_path / "h1", difficulty="hard", **TINY))
    again = _tree_bytes(generate_dataset(tmp_path / "h2", difficulty="hard", **TINY))
    easy = _tree_bytes(generate_dataset(tmp_path / "e", **TINY))
    assert hard == again
    assert hard.keys() == easy.keys()
    wavs = [k for k in hard if k.endswith(".wav")]
    assert all(hard[k] != easy[k] for k in wavs)

    def mean_rms(root: Path) -> float:
        return float(np.mean([np.std(sf.read(str(root / k))[0]) for k in wavs]))

    # same machine level, background 12 dB louder (SNR -6 instead of 6 dB): about 2x the RMS
    assert mean_rms(tmp_path / "h1") > 1.5 * mean_rms(tmp_path / "e")
    mimii = generate_dataset(tmp_path / "m", layout="mimii", difficulty="hard", **TINY)
    assert (mimii / "-6_dB_fan").is_dir()  # the hard SNR names the MIMII folders
    with pytest.raises(ValueError, match=r"difficulty must be one of \('easy', 'hard'\)"):
        generate_dataset(tmp_path / "x", difficulty="brutal", **TINY)


def test_cli_hard_writes_what_generate_dataset_writes(tmp_path: Path, capsys) -> None:
    argv = ["--duration", "0.1", "--machine-types", "valve", "--difficulty", "hard"]
    main(["--root", str(tmp_path / "cli"), *argv])
    assert "180 clips (dcase2020)" in capsys.readouterr().out
    direct = generate_dataset(
        tmp_path / "direct", machine_types=("valve",), duration_s=0.1, difficulty="hard"
    )
    assert _tree_bytes(tmp_path / "cli") == _tree_bytes(direct)


def test_interrupted_cli_leaves_no_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = synthetic_dataset.write_wav
    written: list[Path] = []

    def write_then_fail(path: Path, *args: object) -> None:
        if len(written) == 5:
            raise KeyboardInterrupt  # killed midway
        real_write(path, *args)
        written.append(path)

    monkeypatch.setattr(synthetic_dataset, "write_wav", write_then_fail)
    root = tmp_path / "synthetic"
    with pytest.raises(KeyboardInterrupt):
        main(["--root", str(root), "--duration", "0.1", "--machine-types", "valve"])
    assert len(written) == 5 and all(
        p.is_relative_to(tmp_path / "synthetic.partial") for p in written
    )
    assert list(tmp_path.iterdir()) == []  # neither the root nor its partial folder


def test_cli_refuses_an_existing_root_unless_overwrite(tmp_path: Path, capsys) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    argv = ["--root", str(root), "--duration", "0.1", "--machine-types", "valve"]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert f"{root} already exists; remove it or pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in root.iterdir()] == ["keep.txt"]
    main([*argv, "--overwrite"])
    assert not (root / "keep.txt").exists() and (root / "valve" / "train").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]  # no .partial / .old left
    with pytest.raises(FileExistsError, match="already exists"):
        write_atomically(root, machine_types=("valve",), duration_s=0.1)
