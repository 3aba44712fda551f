"""ClipDataset and MachineSoundDataModule: the batch contract, splits, seeds and errors."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import aad.data.synthetic as synthetic
from aad.data.audio import AudioDecodeError
from aad.data.datamodule import ClipDataset, MachineSoundDataModule, list_machine_types
from aad.data.manifest import ClipRecord
from aad.data.readers import DatasetNotFoundError


def _module(root: Path, **kwargs) -> MachineSoundDataModule:
    kwargs = {"clip_seconds": 2.0, "batch_size": 4, **kwargs}
    return MachineSoundDataModule(root=str(root), **kwargs)


def test_batches_follow_the_contract(synthetic_root: Path) -> None:
    dm = _module(synthetic_root)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["waveform"].dtype == torch.float32 and batch["waveform"].shape == (4, 32000)
    assert batch["target"].dtype == torch.int64 and batch["target"].shape == (4,)
    assert batch["index"].dtype == torch.int64 and batch["index"].shape == (4,)
    assert not batch["target"].any()  # training clips are normal
    records = dm.records("fit")
    for index, target in zip(batch["index"].tolist(), batch["target"].tolist(), strict=True):
        assert records[index].target == target


def test_splits_and_val_holdout(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, val_fraction=0.25)
    dm.setup("fit")
    train, val, test = dm.records("fit"), dm.records("validate"), dm.records("test")
    assert (len(train), len(val), len(test)) == (36, 12, 48)  # 2 types x 2 ids x 12/6/6
    assert not {r.path for r in train} & {r.path for r in val}
    assert {r.label for r in val} == {"normal"} and {r.split for r in val} == {"train"}
    assert dm.records("predict") == test
    targets = torch.cat([b["target"] for b in dm.test_dataloader()])
    assert targets.tolist() == [r.target for r in test] and int(targets.sum()) == 24
    assert dm.records("val") == val  # aliases


def test_train_shuffle_is_seeded(synthetic_root: Path) -> None:
    def first_indices(seed: int) -> list[int]:
        dm = _module(synthetic_root, seed=seed, machine_type="fan")
        dm.setup("fit")
        return next(iter(dm.train_dataloader()))["index"].tolist()

    assert first_indices(0) == first_indices(0)
    assert first_indices(0) != first_indices(1)
    dm = _module(synthetic_root, machine_type="fan")
    dm.setup("test")
    first = [b["index"].tolist() for b in dm.test_dataloader()]
    assert first[0] == [0, 1, 2, 3]  # test order is the manifest order


def test_machine_type_and_id_filters(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, machine_type="valve", machine_id="id_02", val_fraction=0.0)
    dm.setup("fit")
    assert {(r.machine_type, r.machine_id) for r in dm.records("test")} == {("valve", "id_02")}
    assert len(dm.records("fit")) == 12 and dm.records("validate") == dm.records("fit")
    with pytest.raises(ValueError, match=r"machine_type 'drill' not found .* \['fan', 'valve'\]"):
        _module(synthetic_root, machine_type="drill").setup("fit")
    with pytest.raises(ValueError, match=r"machine_id 'id_09' not found"):
        _module(synthetic_root, machine_id="id_09").setup("fit")
    assert list_machine_types(synthetic_root) == ["fan", "valve"]


@pytest.mark.real_data
def test_test_only_folder_evaluates_but_refuses_fit(dcase2020_mini: Path) -> None:
    dm = _module(
        dcase2020_mini, machine_type="ToyCar", clip_seconds=None, generate_if_missing=False
    )
    dm.setup("test")
    assert dm.num_samples == 11 * 16000 and len(dm.records("test")) == 22
    batch = next(iter(dm.test_dataloader()))
    assert batch["waveform"].shape == (4, 176000)
    with pytest.raises(ValueError, match=r"no normal training clips for machine_type='ToyCar'"):
        dm.setup("fit")


def test_generates_synthetic_data_when_root_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []
    real = synthetic.generate_dataset

    def small(root, **kwargs):
        calls.append((root, kwargs))
        return real(
            root,
            machine_types=("pump",),
            machine_ids=("id_00",),
            n_train=4,
            n_test_normal=1,
            n_test_anomaly=1,
            duration_s=0.25,
        )

    monkeypatch.setattr(synthetic, "generate_dataset", small)
    root = tmp_path / "synthetic_fresh"
    with caplog.at_level(logging.WARNING, logger="aad.data.synthetic"):
        dm = _module(root, clip_seconds=0.25)
        dm.prepare_data()
        dm.setup("fit")
    partial = root.with_name("synthetic_fresh.partial")  # written there, renamed when complete
    assert calls == [(partial, {"size": "small"})]
    assert root.is_dir() and not partial.exists()
    assert "writing a synthetic dataset" in caplog.text
    assert len(dm.records("fit")) + len(dm.records("validate")) == 4
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        _module(tmp_path / "synthetic_absent", generate_if_missing=False).setup("fit")
    # a missing root not named synthetic* is a mistyped path to real data, never generated
    with pytest.raises(DatasetNotFoundError, match="mimii_typo.*does not exist"):
        _module(tmp_path / "mimii_typo").setup("fit")
    assert len(calls) == 1


def test_interrupted_generation_leaves_no_half_written_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(root, **kwargs):
        (Path(root) / "fan" / "train").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic, "generate_dataset", interrupted)
    root = tmp_path / "synthetic"
    with pytest.raises(KeyboardInterrupt):
        synthetic.generate_if_missing(root)
    assert not root.exists()  # the next run generates again instead of reading a half tree


def test_generated_synthetic_data_follows_the_requested_layout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = synthetic.generate_dataset
    layouts = []

    def small(root, **kwargs):
        layouts.append(kwargs.get("layout"))
        tiny = {"n_train": 4, "n_test_normal": 1, "n_test_anomaly": 1, "duration_s": 0.25}
        kwargs = {**kwargs, "machine_types": ("valve",), "machine_ids": ("id_00",), **tiny}
        return real(root, **kwargs)

    monkeypatch.setattr(synthetic, "generate_dataset", small)
    dm = _module(tmp_path / "synthetic_mimii", layout="mimii", clip_seconds=0.25)
    dm.prepare_data()
    dm.setup("fit")  # a MIMII tree, not a DCASE 2020 one the mimii reader cannot read
    assert layouts == ["mimii"]
    assert {r.dataset for r in dm.manifest} == {"mimii"}


@pytest.mark.parametrize("channel", [-1, True, "left", 1.0])
def test_bad_channel_is_refused_at_construction(synthetic_root: Path, channel) -> None:
    with pytest.raises(ValueError, match="channel must be a non-negative int or 'mean'"):
        _module(synthetic_root, channel=channel)


def test_bad_clip_is_skipped_or_raises_under_strict(tmp_path: Path, synthetic_root: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(synthetic_root / "fan", root / "fan")
    bad = root / "fan" / "train" / "normal_id_00_00000999.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    with pytest.warns(UserWarning, match=r"skipping 1 unreadable clip\(s\):\n.*00000999\.wav"):
        dm = _module(root)
        dm.setup("fit")
    assert all("00000999" not in r.path for r in dm.records("fit") + dm.records("validate"))
    with pytest.raises(AudioDecodeError, match=r"00000999\.wav"):
        _module(root, strict=True).setup("fit")


def test_dataset_raises_on_nan_clip_naming_it(tmp_path: Path) -> None:
    data = np.full(1000, 0.1, dtype=np.float32)
    data[5] = np.nan
    path = tmp_path / "nan_clip.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    dataset = ClipDataset(
        [ClipRecord(str(path), "x", "fan", "id_00", "test", "normal")], 16000, 800
    )
    with pytest.raises(AudioDecodeError, match=r"nan_clip\.wav has 1 NaN/Inf"):
        dataset[0]


def test_predict_loose_files_and_channel_mean(tmp_path: Path) -> None:
    root = synthetic.generate_dataset(
        tmp_path / "mimii",
        layout="mimii",
        machine_types=("slider",),
        machine_ids=("id_00",),
        n_train=2,
        n_test_normal=1,
        n_test_anomaly=1,
        duration_s=0.25,
    )
    paths = sorted(str(p) for p in root.rglob("*.wav"))
    dm = MachineSoundDataModule.from_paths(paths, channel="mean", clip_seconds=None, batch_size=8)
    dm.setup("predict")
    records = dm.records("predict")
    assert [r.path for r in records] == paths
    assert {(r.label, r.machine_type, r.target) for r in records} == {("unknown", "unknown", -1)}
    batch = next(iter(dm.predict_dataloader()))
    assert batch["waveform"].shape == (4, 4000) and batch["target"].tolist() == [-1] * 4
    data, _ = sf.read(paths[0], dtype="float32")
    assert torch.allclose(batch["waveform"][0], torch.from_numpy(data.mean(axis=1)), atol=1e-6)


def test_snr_filter_for_raw_mimii(tmp_path: Path) -> None:
    tiny = {
        "machine_types": ("fan",),
        "machine_ids": ("id_00",),
        "n_train": 3,
        "n_test_normal": 1,
        "n_test_anomaly": 1,
        "duration_s": 0.25,
        "layout": "mimii",
    }
    for snr_db in (6.0, -6.0):
        synthetic.generate_dataset(tmp_path, snr_db=snr_db, **tiny)
    dm = _module(tmp_path, snr=-6, clip_seconds=0.25, val_fraction=0.0)
    dm.setup("fit")
    records = dm.records("fit") + dm.records("test")
    assert len(records) == 5 and {r.attributes["snr"] for r in records} == {"-6_dB"}


def test_train_from_test_borrows_normals_of_a_test_only_folder(dcase2020_mini: Path) -> None:
    dm = MachineSoundDataModule(
        root=str(dcase2020_mini), machine_type="fan", train_from_test=0.5, val_fraction=0.0
    )
    dm.setup("fit")
    train, test = dm.records("fit"), dm.records("test")
    # fan: ids 00/02/04 have 2 normal test clips (1 moves), id_06 has 6 (3 move)
    assert len(train) == 6 and {r.label for r in train} == {"normal"}
    assert {r.split for r in train} == {"train"}
    assert not {r.path for r in train} & {r.path for r in test}
    assert sum(r.label == "normal" for r in test) == 12 - 6
    assert sum(r.label == "anomaly" for r in test) == 11
    with pytest.raises(ValueError, match=r"train_from_test must be in \[0, 1\), got 1.0"):
        MachineSoundDataModule(root=str(dcase2020_mini), train_from_test=1.0)


def test_without_held_out_clips_validation_reads_the_training_clips(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, machine_type="fan", val_fraction=0.0)
    dm.setup("fit")
    assert dm.records("validate") == dm.records("fit") != []
    validated = torch.cat([batch["index"] for batch in dm.val_dataloader()])
    assert validated.tolist() == list(range(len(dm.records("fit"))))
