"""MachineSoundDataModule: the batch contract, groups, filters, binding, clip length, generation."""

from __future__ import annotations

import logging
import warnings
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


GENERATE = synthetic.generate_dataset  # the real one: some tests replace the package's


def _tiny(root: Path, **kwargs) -> Path:
    tiny = {"machine_types": ("fan",), "machine_ids": ("id_00",), "n_train": 3,
            "n_test_normal": 1, "n_test_anomaly": 1, "duration_s": 0.25}  # fmt: skip
    return GENERATE(root, **{**tiny, **kwargs})


def test_batches_follow_the_contract(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "d21", layout="dcase2021", machine_ids=("id_00", "id_02"), n_train=4,
                 n_test_normal=2, n_test_anomaly=2)  # fmt: skip
    dm = _module(root, clip_seconds=0.25, val_fraction=0.0)
    dm.setup("fit")
    assert dm.group is not None and dm.group.class_names == ["section_00", "section_02"]
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"waveform", "target", "index", "class_index", "label_index", "domain"}
    assert batch["waveform"].dtype == torch.float32 and batch["waveform"].shape == (4, 4000)
    for key in ("target", "index", "class_index", "label_index", "domain"):
        assert batch[key].dtype == torch.int64 and batch[key].shape == (4,), key
    assert not batch["target"].any()  # training clips are normal
    records = dm.records("test")
    batches = list(dm.test_dataloader())
    index = torch.cat([b["index"] for b in batches]).tolist()
    assert index == list(range(len(records))) == list(range(8))
    assert torch.cat([b["target"] for b in batches]).tolist() == [r.target for r in records]
    domains = torch.cat([b["domain"] for b in batches]).tolist()
    assert domains == [{"source": 0, "target": 1}[r.domain] for r in records]
    assert set(domains) == {0, 1}
    classes = torch.cat([b["class_index"] for b in batches]).tolist()
    assert classes == [int(r.machine_id[-1]) // 2 for r in records]  # section_00 -> 0, _02 -> 1
    # id x attributes of the training clips (the target domain's clips run at speed 110)
    labels = [
        "section_00|spd_100",
        "section_00|spd_110",
        "section_02|spd_100",
        "section_02|spd_110",
    ]
    assert dm.attribute_labels == labels
    wanted = [labels.index(r.attribute_label) for r in records]
    assert torch.cat([b["label_index"] for b in batches]).tolist() == wanted
    # a clip without a domain, and an id the group never trained on: -1 each
    other = ClipRecord(records[0].path, "x", "fan", "section_04", "test", "unknown")
    item = ClipDataset([other], 16000, 4000, class_names=dm.group.class_names,
                       attribute_labels=dm.attribute_labels)[0]  # fmt: skip
    assert (int(item["class_index"]), int(item["label_index"])) == (-1, -1)
    assert (int(item["domain"]), int(item["target"])) == (-1, -1)


def test_records_and_loaders_of_each_stage(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, machine_type="fan", val_fraction=0.25)
    dm.setup("fit")
    train, val, test = dm.records("fit"), dm.records("validate"), dm.records("test")
    assert (len(train), len(val), len(test)) == (18, 6, 24)
    assert dm.records("val") == val and dm.records("train") == train  # aliases
    assert dm.records("predict") == test
    assert len(torch.cat([b["index"] for b in dm.val_dataloader()])) == 6
    with pytest.raises(ValueError, match="stage must be one of fit/validate/test/predict"):
        dm.records("deploy")
    with pytest.raises(RuntimeError, match=r"call setup\(\) before records\(\)"):
        _module(synthetic_root).records("fit")


def test_train_shuffle_is_seeded(synthetic_root: Path) -> None:
    def order(seed: int) -> list[int]:
        dm = _module(synthetic_root, seed=seed, machine_type="fan")
        dm.setup("fit")
        return torch.cat([b["index"] for b in dm.train_dataloader()]).tolist()

    first = order(0)
    assert first == order(0) and sorted(first) == list(range(24))
    assert first != order(1) and first != sorted(first)
    dm = _module(synthetic_root, machine_type="fan")
    dm.setup("test")
    tested = torch.cat([b["index"] for b in dm.test_dataloader()]).tolist()
    assert tested == list(range(24))  # test order is the manifest order


def test_machine_type_and_id_filters(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, machine_type="valve", machine_id="id_02", val_fraction=0.0)
    dm.setup("fit")
    assert {(r.machine_type, r.machine_id) for r in dm.records("test")} == {("valve", "id_02")}
    assert len(dm.records("fit")) == 12 and dm.records("validate") == dm.records("fit")
    both = _module(synthetic_root, machine_type=["fan", "valve"], machine_id=["id_00"])
    assert [(g.label, len(g.test)) for g in both.groups()] == [("fan", 12), ("valve", 12)]
    assert [g.label for g in _module(synthetic_root, machine_type="all").groups()] == [
        "fan", "valve"]  # fmt: skip
    with pytest.raises(ValueError, match=r"machine_type 'drill' not found .* \['fan', 'valve'\]"):
        _module(synthetic_root, machine_type="drill").groups()
    with pytest.raises(ValueError, match=r"machine_id 'id_09' not found"):
        _module(synthetic_root, machine_id=["id_00", "id_09"]).groups()
    with pytest.raises(ValueError, match=r"2 groups of clips .*\['fan', 'valve'\].*machine_type"):
        _module(synthetic_root).setup("fit")
    assert list_machine_types(synthetic_root) == ["fan", "valve"]


def test_for_group_binds_one_group_at_a_sample_rate(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, per_id=True)
    groups = dm.groups()
    assert [g.label for g in groups] == ["fan/id_00", "fan/id_02", "valve/id_00", "valve/id_02"]
    bound = dm.for_group(groups[2], sample_rate=8000)
    assert bound.group is groups[2] and bound.groups() == [groups[2]]
    assert (bound.sample_rate, bound.num_samples) == (8000, 16000)
    assert bound.hparams.machine_type == "valve" and bound.hparams.machine_id == "id_00"
    assert bound.hparams.sample_rate == 8000
    assert dm.sample_rate == 16000 and dm.group is None and len(dm.groups()) == 4
    batch = next(iter(bound.test_dataloader()))
    assert batch["waveform"].shape == (4, 16000)
    assert {r.machine_type for r in bound.records("test")} == {"valve"}
    same_rate = dm.for_group(groups[0])
    assert (same_rate.sample_rate, same_rate.num_samples) == (16000, 32000)


def test_binding_a_group_leaves_the_source_and_other_bindings_alone(synthetic_root: Path) -> None:
    """A trainer checkpoints ``dict(datamodule.hparams)``: binding valve must not rewrite the
    hparams of the fan binding (nor of the unbound source DataModule)."""
    dm = _module(synthetic_root)
    fan, valve = dm.groups()
    bound_fan = dm.for_group(fan)
    dm.for_group(valve, sample_rate=8000)
    assert bound_fan.hparams.machine_type == "fan" and bound_fan.hparams.sample_rate == 16000
    assert dm.hparams.machine_type is None and dm.hparams.sample_rate == 16000


@pytest.mark.parametrize("seconds", [-1, 0])
def test_clip_seconds_must_be_positive_or_null(synthetic_root: Path, seconds: float) -> None:
    with pytest.raises(ValueError, match=f"clip_seconds must be > 0 or null .*got {seconds}"):
        _module(synthetic_root, clip_seconds=seconds)


def _sine_wave(seconds: float, amplitude: float = 0.1) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def _write(path: Path, seconds: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, _sine_wave(seconds), 16000, subtype="PCM_16")
    return path


def test_null_clip_seconds_is_the_median_clip_length(tmp_path: Path) -> None:
    for index, seconds in enumerate((1.0, 1.5, 3.0)):
        _write(tmp_path / "fan" / "train" / f"normal_id_00_{index:08d}.wav", seconds)
    _write(tmp_path / "fan" / "test" / "normal_id_00_00000000.wav", 2.0)
    _write(tmp_path / "fan" / "test" / "anomaly_id_00_00000000.wav", 2.5)
    dm = _module(tmp_path, clip_seconds=None, val_fraction=0.0)
    dm.setup("fit")
    assert dm.num_samples == 2 * 16000  # median of 1, 1.5, 2, 2.5, 3 s
    assert len(dm.records("fit")) == 3  # 1.0 s is half the clip length: kept, zero-padded
    shapes = {tuple(b["waveform"].shape[1:]) for b in dm.train_dataloader()}
    assert shapes == {(32000,)}


def test_null_clip_seconds_with_an_unreadable_clip_screens_it(tmp_path: Path) -> None:
    """The median clip length is measured before screening: an unreadable clip among them
    must still be one of the screened clips, not a crash while measuring lengths."""
    for index in range(3):
        _write(tmp_path / "fan" / "train" / f"normal_id_00_{index:08d}.wav", 1.0)
    _write(tmp_path / "fan" / "test" / "anomaly_id_00_00000000.wav", 1.0)
    (tmp_path / "fan" / "train" / "normal_id_00_00000009.wav").write_bytes(b"RIFF\x00\x00")
    dm = _module(tmp_path, clip_seconds=None, val_fraction=0.0)
    with pytest.warns(UserWarning, match=r"00000009\.wav: not readable audio"):
        dm.setup("fit")
    assert dm.num_samples == 16000 and len(dm.records("fit")) == 3


def test_a_loud_16_bit_multichannel_clip_is_kept_with_channel_mean(tmp_path: Path) -> None:
    """Mixing the channels of 16-bit PCM must not look like a float clip 10,000x too loud."""
    stereo = np.stack([_sine_wave(1.0, 0.5), _sine_wave(1.0, 0.4)], axis=1)
    for name in ("train/normal_id_00_00000000", "train/normal_id_00_00000001",
                 "test/anomaly_id_00_00000000"):  # fmt: skip
        (tmp_path / "fan" / name).parent.mkdir(parents=True, exist_ok=True)
        sf.write(tmp_path / "fan" / f"{name}.wav", stereo, 16000, subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no clip may be skipped
        (group,) = _module(tmp_path, channel="mean", clip_seconds=1.0, val_fraction=0.0).groups()
    assert len(group.train) == 2 and len(group.test) == 1 and group.skipped == []


@pytest.mark.real_data
def test_test_only_folder_evaluates_but_refuses_fit(dcase2020_mini: Path) -> None:
    dm = _module(
        dcase2020_mini, machine_type="ToyCar", clip_seconds=None, generate_if_missing=False
    )
    dm.setup("test")
    assert dm.num_samples == 11 * 16000 and len(dm.records("test")) == 22
    assert next(iter(dm.test_dataloader()))["waveform"].shape == (4, 176000)
    with pytest.raises(ValueError, match=r"no usable normal training clips for ToyCar .*"
                       r"data.train_from_test"):  # fmt: skip
        dm.setup("fit")


@pytest.mark.real_data
def test_train_from_test_borrows_half_of_each_types_normals(dcase2020_mini: Path) -> None:
    dm = _module(dcase2020_mini, machine_type="fan", train_from_test=0.5, val_fraction=0.0,
                 clip_seconds=None)  # fmt: skip
    dm.setup("fit")
    train, test = dm.records("fit"), dm.records("test")
    # fan: 12 normal test clips over 4 ids, ids pooled: 6 borrowed (P1)
    assert len(train) == 6 and {(r.label, r.split) for r in train} == {("normal", "train")}
    assert not {r.path for r in train} & {r.path for r in test}
    assert sum(r.label == "normal" for r in test) == 6
    assert sum(r.label == "anomaly" for r in test) == 11
    assert dm.hparams.train_from_test == 0.5
    with pytest.raises(ValueError, match=r"train_from_test must be in \[0.0, 1.0\), got 1.0"):
        _module(dcase2020_mini, train_from_test=1.0)


def test_without_held_out_clips_validation_reads_the_training_clips(synthetic_root: Path) -> None:
    dm = _module(synthetic_root, machine_type="fan", val_fraction=0.0)
    dm.setup("fit")
    assert dm.records("validate") == dm.records("fit") != []
    validated = torch.cat([batch["index"] for batch in dm.val_dataloader()])
    assert validated.tolist() == list(range(len(dm.records("fit"))))


@pytest.mark.parametrize("channel", [-1, True, "left", 1.0])
def test_bad_channel_is_refused_at_construction(synthetic_root: Path, channel) -> None:
    with pytest.raises(ValueError, match="channel must be a non-negative int or 'mean'"):
        _module(synthetic_root, channel=channel)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"protocol": "leaky"}, "protocol must be one of"),
     ({"val_fraction": 1.0}, r"val_fraction must be in \[0.0, 1.0\)"),
     ({"train_fraction": 0.0}, r"train_fraction must be in \(0, 1\]"),
     ({"batch_size": 0}, "batch_size must be positive")],
)  # fmt: skip
def test_bad_settings_are_refused_at_construction(synthetic_root: Path, kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        _module(synthetic_root, **kwargs)


def test_dataset_raises_on_nan_clip_naming_it(tmp_path: Path) -> None:
    data = np.full(1000, 0.1, dtype=np.float32)
    data[5] = np.nan
    path = tmp_path / "nan_clip.wav"
    sf.write(path, data, 16000, subtype="FLOAT")
    dataset = ClipDataset([ClipRecord(str(path), "x", "fan", "id_00", "test", "normal")], 16000)
    with pytest.raises(AudioDecodeError, match=r"nan_clip\.wav has 1 NaN/Inf"):
        dataset[0]


def test_channel_mean_mixes_a_mimii_clip(tmp_path: Path) -> None:
    root = _tiny(tmp_path / "mimii", layout="mimii", machine_types=("slider",))
    dm = _module(root, channel="mean", clip_seconds=0.25, val_fraction=0.0)
    dm.setup("test")
    record = dm.records("test")[0]
    data, _ = sf.read(record.path, dtype="float32")
    assert data.shape[1] == 8
    batch = next(iter(dm.test_dataloader()))
    assert torch.allclose(batch["waveform"][0], torch.from_numpy(data.mean(axis=1)), atol=1e-6)


def test_snr_filter_for_raw_mimii(tmp_path: Path) -> None:
    for snr_db in (6.0, -6.0):
        _tiny(tmp_path, layout="mimii", snr_db=snr_db)
    dm = _module(tmp_path, snr=-6, clip_seconds=0.25, val_fraction=0.0)
    dm.setup("fit")
    records = dm.records("fit") + dm.records("test")
    assert len(records) == 5 and {r.attributes["snr"] for r in records} == {"-6_dB"}


def test_generates_synthetic_data_when_root_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls = []

    def small(root, **kwargs):
        calls.append((root, kwargs))
        return _tiny(root, machine_types=("pump",), n_train=4)

    monkeypatch.setattr(synthetic, "generate_dataset", small)
    root = tmp_path / "synthetic_fresh"
    with caplog.at_level(logging.WARNING, logger="aad.data.synthetic"):
        dm = _module(root, clip_seconds=0.25, synthetic_difficulty="hard")
        dm.setup("fit")  # groups() prepares the data first
    partial = root.with_name("synthetic_fresh.partial")  # written there, renamed when complete
    assert calls == [(partial, {"size": "small", "difficulty": "hard"})]
    assert root.is_dir() and not partial.exists()
    assert "writing a synthetic dataset" in caplog.text
    assert len(dm.records("fit")) == 4
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        _module(tmp_path / "synthetic_absent", generate_if_missing=False).groups()
    # a missing root not named synthetic* is a mistyped path to real data, never generated
    with pytest.raises(DatasetNotFoundError, match="mimii_typo.*does not exist"):
        _module(tmp_path / "mimii_typo").groups()
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
    layouts = []

    def small(root, **kwargs):
        layouts.append(kwargs.get("layout"))
        return _tiny(root, **{**kwargs, "machine_types": ("valve",), "size": "small"})

    monkeypatch.setattr(synthetic, "generate_dataset", small)
    dm = _module(tmp_path / "synthetic_mimii", layout="mimii", clip_seconds=0.25)
    dm.setup("fit")  # a MIMII tree, not a DCASE 2020 one the mimii reader cannot read
    assert layouts == ["mimii"]
    assert {r.dataset for r in dm.manifest()} == {"mimii"}
