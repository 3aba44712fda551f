"""Which clips train, validate and test a model: every split rule (aad.data.splits) on the
synthetic fixture and the real dcase2020-mini clips, then the screening of groups()."""

from __future__ import annotations

import random
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import soundfile as sf

from aad.data.audio import AudioDecodeError
from aad.data.datamodule import MachineSoundDataModule
from aad.data.manifest import ClipRecord, Manifest
from aad.data.readers import read_manifest
from aad.data.splits import (
    MIN_HELD_OUT,
    STUDY_PROTOCOL_LABEL,
    borrow_test_normals,
    make_groups,
    mimii_split,
    study_split,
    validation_split,
)


def _clip(name: str, label: str = "normal", split: str = "test", machine_type: str = "fan",
          machine_id: str = "id_00") -> ClipRecord:  # fmt: skip
    return ClipRecord(f"/x/{machine_type}/{name}.wav", "t", machine_type, machine_id, split, label)


def _paths(records) -> set[str]:
    return {r.path for r in records}


@pytest.fixture(scope="module")
def synthetic_manifest(synthetic_root: Path) -> Manifest:
    return read_manifest(synthetic_root)


def test_clean_groups_of_the_synthetic_fixture(synthetic_manifest: Manifest) -> None:
    # 2 types x 2 ids x (12 train normals, 6 + 6 test); 0.25 of 24 = 6 clips held out
    groups = make_groups(synthetic_manifest, val_fraction=0.25, seed=0)
    assert [g.label for g in groups] == ["fan", "valve"]
    for group in groups:
        assert (len(group.train), len(group.val), len(group.test)) == (18, 6, 24)
        assert group.notes == [] and group.skipped == []
        assert not _paths(group.train) & _paths(group.val)
        assert not (_paths(group.train) | _paths(group.val)) & _paths(group.test)
        assert {(r.split, r.label) for r in group.train + group.val} == {("train", "normal")}
        assert {r.split for r in group.test} == {"test"}
        assert sum(r.target for r in group.test) == 12
        assert {r.machine_type for r in group.train + group.val + group.test} == {group.label}
        assert group.class_names == ["id_00", "id_02"]
    # another seed holds out other clips
    other = make_groups(synthetic_manifest, val_fraction=0.25, seed=1)
    assert _paths(other[0].val) != _paths(groups[0].val)


def test_validation_is_held_out_only_from_four_clips(synthetic_manifest: Manifest) -> None:
    # 0.1 of 24 rounds to 2 (< 4): validation reads the training clips, with a note
    (fan, _) = make_groups(synthetic_manifest, val_fraction=0.1)
    assert fan.val == fan.train and len(fan.train) == 24
    assert fan.notes == [
        "24 training clips: too few to hold 4 out for validation; validating on the training clips"
    ]
    per_id = make_groups(synthetic_manifest, per_id=True, val_fraction=0.25)  # 3 of 12
    assert [g.label for g in per_id] == ["fan/id_00", "fan/id_02", "valve/id_00", "valve/id_02"]
    assert all(g.val == g.train and len(g.train) == 12 and len(g.test) == 12 for g in per_id)
    held = make_groups(synthetic_manifest, per_id=True, val_fraction=0.34)  # 4 of 12
    assert all((len(g.train), len(g.val)) == (8, 4) and not g.notes for g in held)


def test_validation_split_rules() -> None:
    train = [_clip(f"n{i:02d}", split="train") for i in range(10)]
    fit, val, note = validation_split(list(reversed(train)), 0.4, seed=3)
    assert len(val) == MIN_HELD_OUT and len(fit) == 6 and note is None
    assert sorted(fit + val, key=lambda r: r.path) == train
    assert validation_split(train, 0.4, seed=3)[1] == val  # order of the input does not matter
    assert validation_split(train, 0.0, seed=0) == (train, train, None)
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        validation_split(train, 1.0, seed=0)


def test_p1_borrows_half_of_each_types_normals_as_the_quality_benchmark_does() -> None:
    clips = [_clip(f"{t}_n{i}", machine_type=t, machine_id=f"id_0{i % 3}")
             for t, n in (("fan", 7), ("pump", 4)) for i in range(n)]  # fmt: skip
    clips += [_clip(f"fan_a{i}", "anomaly") for i in range(3)]
    borrowed = borrow_test_normals(Manifest(clips), 0.5, seed=0)
    for machine_type, n in (("fan", 7), ("pump", 4)):
        normals = sorted(
            (c for c in clips if c.machine_type == machine_type and c.label == "normal"),
            key=lambda r: r.path,
        )
        expected = {r.path for r in random.Random(0).sample(normals, n // 2)}
        moved = {r.path for r in borrowed if r.split == "train" and r.machine_type == machine_type}
        assert moved == expected
    assert all(r.split == "test" for r in borrowed if r.label == "anomaly")
    assert borrow_test_normals(Manifest(clips), 0.0).records == clips
    with pytest.raises(ValueError, match=r"train_from_test must be in \[0, 1\), got 1.0"):
        borrow_test_normals(Manifest(clips), 1.0)


def test_borrowing_keeps_a_normal_clip_in_test() -> None:
    two = Manifest([_clip("a"), _clip("b")])
    assert sum(r.split == "train" for r in borrow_test_normals(two, 0.9)) == 1
    one = Manifest([_clip("a"), _clip("b", "anomaly")])
    assert [r.split for r in borrow_test_normals(one, 0.9)] == ["test", "test"]


def test_study_protocol_tests_on_its_training_normals_and_says_so() -> None:
    clips = [_clip(f"{label}_{i}", label) for label in ("normal", "anomaly") for i in range(5)]
    (group,) = make_groups(Manifest(clips), protocol="study", train_fraction=0.8, seed=0)
    assert len(group.train) == 4 and {r.label for r in group.train} == {"normal"}
    assert len(group.test) == 10 and set(group.train) <= set(group.test)
    assert group.notes[0] == STUDY_PROTOCOL_LABEL  # then: too few clips to hold any out
    assert study_split(clips, 0.8, seed=0) == group.train
    drawn = {tuple(r.path for r in study_split(clips, 0.8, seed=s)) for s in range(6)}
    assert len(drawn) > 1  # the seed decides which normals train
    with pytest.raises(ValueError, match=r"train_fraction must be in \(0, 1\], got 0"):
        study_split(clips, 0, seed=0)
    # the clean protocol on the same folder: nothing to train on, and never a training normal
    (clean,) = make_groups(Manifest(clips), seed=0)
    assert clean.train == [] and len(clean.test) == 10
    with pytest.raises(ValueError, match="protocol must be one of"):
        make_groups(Manifest(clips), protocol="leaky")


def test_clean_protocol_never_tests_training_normals(synthetic_manifest: Manifest) -> None:
    for per_id in (False, True):
        for group in make_groups(synthetic_manifest, per_id=per_id, val_fraction=0.25):
            assert not (_paths(group.train) | _paths(group.val)) & _paths(group.test)


def test_unlabelled_clips_are_tested() -> None:
    clips = [_clip("n0", split="train"), _clip("eval_0", "unknown"), _clip("a0", "anomaly")]
    (group,) = make_groups(Manifest(clips))
    assert [r.label for r in group.test] == ["anomaly", "unknown"]


def test_mimii_split_is_seeded_and_keeps_a_recording_together_across_snrs() -> None:
    clips = []
    for snr in ("-6_dB", "6_dB"):
        clips += [ClipRecord(f"/m/{snr}/fan/id_00/normal/{i:08d}.wav", "mimii", "fan", "id_00",
                             "test", "normal") for i in range(8)]  # fmt: skip
        clips += [ClipRecord(f"/m/{snr}/fan/id_00/abnormal/{i:08d}.wav", "mimii", "fan",
                             "id_00", "test", "anomaly") for i in range(3)]  # fmt: skip
    split = mimii_split(clips, seed=0)
    test_normals = {Path(r.path).name for r in split if r.split == "test" and r.label == "normal"}
    assert len(test_normals) == 3  # as many normal clips as abnormal ones
    for snr in ("-6_dB", "6_dB"):
        names = {Path(r.path).name for r in split
                 if snr in r.path and r.split == "test" and r.label == "normal"}  # fmt: skip
        assert names == test_normals
    assert all(r.split == "test" for r in split if r.label == "anomaly")
    assert sum(r.split == "train" for r in split) == 2 * 5
    assert mimii_split(clips, seed=0) == split
    other = {Path(r.path).name for r in mimii_split(clips, seed=1)
             if r.split == "test" and r.label == "normal"}  # fmt: skip
    assert other != test_normals


P1_COUNTS = {  # machine type: (borrowed normals, normal test clips left, anomalous test clips)
    "ToyCar": (5, 6, 11),
    "ToyConveyor": (4, 5, 9),
    "fan": (6, 6, 11),
    "pump": (6, 7, 9),
    "slider": (5, 6, 10),
    "valve": (5, 6, 11),
}


@pytest.mark.real_data
def test_p1_on_dcase2020_mini(dcase2020_mini: Path) -> None:
    manifest = read_manifest(dcase2020_mini)
    groups = make_groups(borrow_test_normals(manifest, 0.5, seed=0), val_fraction=0.0)
    counts = {
        g.machine_type: (len(g.train), sum(r.label == "normal" for r in g.test),
                         sum(r.label == "anomaly" for r in g.test))
        for g in groups
    }  # fmt: skip
    assert counts == P1_COUNTS
    for group in groups:
        normals = sorted(manifest.filter(machine_type=group.machine_type, label="normal"),
                         key=lambda r: r.path)  # fmt: skip
        chosen = random.Random(0).sample(normals, len(normals) // 2)
        assert _paths(group.train) == _paths(chosen)
        assert not _paths(group.train) & _paths(group.test)


# ------------------------------------------------------------------ screened groups
def _data(root: Path, **kwargs: Any) -> MachineSoundDataModule:
    return MachineSoundDataModule(root=str(root), clip_seconds=2.0, batch_size=4, **kwargs)


def _fan_id_00(synthetic_root: Path, root: Path) -> Path:
    shutil.copytree(synthetic_root / "fan", root / "fan", ignore=shutil.ignore_patterns("*id_02*"))
    return root


def _sine(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _add_bad_clips(root: Path) -> dict[str, Path]:
    """A silent, a 0.1 s, a NaN and a truncated clip among fan id_00's training clips; a NaN
    and a silent clip among its test clips."""
    train, test = root / "fan" / "train", root / "fan" / "test"
    nan = _sine(2.0)
    nan[100] = np.nan
    clips = {
        "silent": (train / "normal_id_00_00000900.wav", np.zeros(32000, np.float32), "PCM_16"),
        "short": (train / "normal_id_00_00000901.wav", _sine(0.1), "PCM_16"),
        "nan": (train / "normal_id_00_00000902.wav", nan, "FLOAT"),
        "test_nan": (test / "anomaly_id_00_00000900.wav", nan, "FLOAT"),
        "test_silent": (test / "normal_id_00_00000900.wav", np.zeros(32000, np.float32), "PCM_16"),
    }
    for path, data, subtype in clips.values():
        sf.write(path, data, 16000, subtype=subtype)
    raw = (train / "normal_id_00_00000000.wav").read_bytes()
    (train / "normal_id_00_00000903.wav").write_bytes(raw[: len(raw) // 2])
    return {name: path for name, (path, _, _) in clips.items()} | {
        "truncated": train / "normal_id_00_00000903.wav"
    }


SCREEN_REASONS = {
    "silent": "silent (all samples zero)",
    "short": "too short: 0.10 s < 1.00 s",
    "nan": "1 NaN/Inf samples",
    "truncated": "truncated",
}


def test_bad_clips_are_left_out_with_one_warning(synthetic_root: Path, tmp_path: Path) -> None:
    root = _fan_id_00(synthetic_root, tmp_path)
    bad = _add_bad_clips(root)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (group,) = _data(root).groups()
    messages = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(messages) == 1, messages
    lines = messages[0].splitlines()
    assert lines[0] == "training clips: 4 clip(s) skipped:"
    for name, reason in SCREEN_REASONS.items():
        assert sum(line.startswith(f"  {bad[name]}: {reason}") for line in lines) == 1, name
    assert f"  {bad['test_nan']}: 1 NaN/Inf samples" in lines[5:]
    fitting = {Path(r.path) for r in group.train + group.val}
    assert len(fitting) == 12 and not fitting & set(bad.values())
    # a bad test clip is a skipped row with its reason; a silent test clip is scored
    assert [(Path(r.path), reason) for r, reason in group.skipped] == [
        (bad["test_nan"], "1 NaN/Inf samples")]  # fmt: skip
    tested = {Path(r.path) for r in group.test}
    assert bad["test_silent"] in tested and bad["test_nan"] not in tested and len(tested) == 13
    with pytest.raises(AudioDecodeError, match=r"training clips: 4 clip\(s\) skipped:\n"):
        _data(root, strict=True).groups()


def _short_fit(root: Path) -> tuple[Any, MachineSoundDataModule]:
    from aad.engine.fit import fit_model, make_trainer
    from aad.models import LSTMAE

    data = _data(root, machine_type="fan")
    (group,) = data.groups()
    L.seed_everything(0)
    module = LSTMAE(score="mean", features={"features": ["mel"], "mel": {"n_mels": 16}}, window=8,
                    hidden_size=8, latent_size=4)  # fmt: skip
    trainer = make_trainer({"max_epochs": 1, "logger": False, "enable_checkpointing": False,
                            "enable_progress_bar": False, "enable_model_summary": False,
                            "num_sanity_val_steps": 0})  # fmt: skip
    bound = data.for_group(group)
    return fit_model(module, bound, trainer), bound


def test_a_silent_training_clip_does_not_move_the_threshold(
    synthetic_root: Path, tmp_path: Path, one_thread: None
) -> None:
    """Issue 9: one silent clip among the training clips moved the gamma threshold (1.30 ->
    2.37). It is screened out, so the fitted threshold is the one without it."""
    clean, _ = _short_fit(_fan_id_00(synthetic_root, tmp_path / "clean"))
    root = _fan_id_00(synthetic_root, tmp_path / "silent")
    silent = root / "fan" / "train" / "normal_id_00_00000900.wav"
    sf.write(silent, np.zeros(32000, np.float32), 16000, subtype="PCM_16")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module, bound = _short_fit(root)
    threshold = float(clean.threshold)
    assert np.isfinite(threshold) and float(module.threshold) == threshold
    assert any(f"{silent}: silent" in str(w.message) for w in caught)
    # had it been scored with the normal clips, the threshold would have moved
    record = ClipRecord(str(silent), "dcase2020", "fan", "id_00", "train", "normal")
    with_silent = module.calibrate(bound.loader("validate", records=[*bound.group.val, record]))
    assert with_silent > 1.05 * threshold
