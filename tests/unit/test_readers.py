"""Layout readers on synthetic trees (every layout) and on the real clips in ../shared/data."""

from __future__ import annotations

import shutil
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aad.data.readers import (
    DatasetNotFoundError,
    LayoutNotRecognisedError,
    detect_layout,
    list_machine_types,
    parse_name_attributes,
    read_manifest,
)
from aad.data.synthetic import generate_dataset

TINY = {
    "machine_types": ("fan", "valve"),
    "machine_ids": ("id_00", "id_02"),
    "n_train": 6,
    "n_test_normal": 2,
    "n_test_anomaly": 2,
    "duration_s": 0.25,
}


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One tiny synthetic tree per layout, plus a MIMII tree with two SNR folders."""
    base = tmp_path_factory.mktemp("layouts")
    out = {
        name: generate_dataset(base / name, layout=name, **TINY)
        for name in ("dcase2020", "mimii", "dcase2021")
    }
    for snr in (6.0, 0.0):
        generate_dataset(base / "mimii_snr", layout="mimii", snr_db=snr, **TINY)
    out["mimii_snr"] = base / "mimii_snr"
    return out


def _write_clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(400, 0.1, dtype=np.float32), 16000, subtype="PCM_16")
    return path


# ------------------------------------------------------------------ synthetic trees
@pytest.mark.parametrize("layout", ["dcase2020", "mimii", "dcase2021"])
def test_detects_each_layout(trees: dict[str, Path], layout: str) -> None:
    assert detect_layout(trees[layout]) == layout


def test_dcase2020_counts_and_labels(trees: dict[str, Path]) -> None:
    manifest = read_manifest(trees["dcase2020"])
    assert len(manifest) == 2 * 2 * 10
    assert {r.dataset for r in manifest} == {"dcase2020"}
    for machine_type in ("fan", "valve"):
        for machine_id in ("id_00", "id_02"):
            counts = manifest.filter(machine_type=machine_type, machine_id=machine_id).counts()
            assert counts[(machine_type, machine_id, "train", "normal")] == 6
            assert counts[(machine_type, machine_id, "test", "normal")] == 2
            assert counts[(machine_type, machine_id, "test", "anomaly")] == 2
    record = manifest.filter(split="test", label="anomaly")[0]
    assert Path(record.path).name.startswith(f"anomaly_{record.machine_id}_")
    assert record.domain == "" and record.target == 1


def test_dcase2020_dev_data_root_and_unlabelled_eval(
    tmp_path: Path, trees: dict[str, Path]
) -> None:
    dev = tmp_path / "dev_data"
    shutil.copytree(trees["dcase2020"] / "fan", dev / "fan")
    _write_clip(dev / "fan" / "test" / "id_04_00000000.wav")
    manifest = read_manifest(dev, "dcase2020")
    assert len(manifest) == 21
    unlabelled = manifest.filter(label="unknown")
    assert [(r.machine_id, r.split, r.target) for r in unlabelled] == [("id_04", "test", -1)]
    assert len(read_manifest(tmp_path)) == 21  # the folder above dev_data works as well


def test_mimii_split_is_seeded_and_balanced(trees: dict[str, Path]) -> None:
    manifest = read_manifest(trees["mimii"], seed=0)
    assert len(manifest) == 2 * 2 * 10 and set(manifest.unique("dataset")) == {"mimii"}
    for machine_type in ("fan", "valve"):
        for machine_id in ("id_00", "id_02"):
            counts = manifest.filter(machine_type=machine_type, machine_id=machine_id).counts()
            anomalies = counts[(machine_type, machine_id, "test", "anomaly")]
            assert anomalies == 2
            assert counts[(machine_type, machine_id, "test", "normal")] == anomalies
            assert counts[(machine_type, machine_id, "train", "normal")] == 6
            assert counts[(machine_type, machine_id, "train", "anomaly")] == 0
    again = read_manifest(trees["mimii"], seed=0)
    assert [r.split for r in again] == [r.split for r in manifest]
    other = read_manifest(trees["mimii"], seed=1)
    assert [r.split for r in other] != [r.split for r in manifest]
    assert Counter(r.split for r in other) == Counter(r.split for r in manifest)


def test_mimii_several_snr_folders(trees: dict[str, Path]) -> None:
    manifest = read_manifest(trees["mimii_snr"])
    assert len(manifest) == 80
    assert manifest.unique("machine_id") == ["id_00", "id_02"]
    assert Counter(r.attributes["snr"] for r in manifest) == {"6_dB": 40, "0_dB": 40}
    split_by_clip = {}
    for r in manifest:  # one recording gets the same split at every SNR
        key = (r.machine_type, r.machine_id, r.label, Path(r.path).name)
        assert split_by_clip.setdefault(key, r.split) == r.split
    assert len(read_manifest(trees["mimii_snr"], snr=0)) == 40
    only_six = read_manifest(trees["mimii_snr"], snr="6_dB")
    assert {r.attributes["snr"] for r in only_six} == {"6_dB"}
    with pytest.raises(
        ValueError, match=r"no MIMII clips at snr -6_dB; available: \['0_dB', '6_dB'\]"
    ):
        read_manifest(trees["mimii_snr"], snr=-6)


def test_dcase2021_names_domains_and_attributes(trees: dict[str, Path]) -> None:
    manifest = read_manifest(trees["dcase2021"])
    assert len(manifest) == 40
    assert manifest.unique("machine_id") == ["section_00", "section_02"]
    assert manifest.unique("domain") == ["source", "target"]
    fan0 = manifest.filter(machine_type="fan", machine_id="section_00")
    domains = Counter((r.split, r.label, r.domain) for r in fan0)
    assert domains == {
        ("train", "normal", "source"): 6 - 1,
        ("train", "normal", "target"): 1,
        ("test", "normal", "source"): 1,
        ("test", "normal", "target"): 1,
        ("test", "anomaly", "source"): 1,
        ("test", "anomaly", "target"): 1,
    }
    assert {r.attributes["spd"] for r in fan0 if r.domain == "target"} == {"110"}
    assert {r.dataset for r in manifest} == {"dcase2021"}


def test_dcase2023_attribute_csv_and_eval_names(tmp_path: Path) -> None:
    fan = tmp_path / "fan"
    _write_clip(fan / "train" / "section_00_source_train_normal_0000_m-n_W.wav")
    _write_clip(fan / "train" / "section_00_target_train_normal_0000_noAttribute.wav")
    _write_clip(fan / "test" / "section_00_0007.wav")
    (fan / "attributes_00.csv").write_text(
        "file_name,d1p,d1v,d2p,d2v\n"
        "fan/train/section_00_source_train_normal_0000_m-n_W.wav,m-n,W,a-b,X\n"
        "fan/test/section_00_0007.wav,m-n,Y,noAttribute,\n"
    )
    manifest = read_manifest(tmp_path, "auto")
    by_name = {Path(r.path).name: r for r in manifest}
    assert by_name["section_00_source_train_normal_0000_m-n_W.wav"].attributes == {
        "m-n": "W",
        "a-b": "X",
    }
    assert by_name["section_00_target_train_normal_0000_noAttribute.wav"].attributes == {}
    unlabelled = by_name["section_00_0007.wav"]
    assert (unlabelled.label, unlabelled.split, unlabelled.domain) == ("unknown", "test", "")
    assert unlabelled.attributes == {"m-n": "Y"}
    assert parse_name_attributes("car_A1_spd_28V_mic_1") == {"car": "A1", "spd": "28V", "mic": "1"}


def test_attribute_csv_saved_with_a_byte_order_mark(tmp_path: Path) -> None:
    name = "section_00_source_train_normal_0000_car_A1.wav"
    _write_clip(tmp_path / "ToyCar" / "train" / name)
    (tmp_path / "ToyCar" / "attributes_00.csv").write_bytes(
        b"\xef\xbb\xbffile_name,d1p,d1v\nToyCar/train/" + name.encode() + b",spd,28V\n"
    )
    (record,) = read_manifest(tmp_path)
    assert record.attributes == {"car": "A1", "spd": "28V"}


def test_toyadmos2_dataset_name(tmp_path: Path) -> None:
    _write_clip(tmp_path / "ToyCar" / "train" / "section_00_source_train_normal_0000_car_A1.wav")
    _write_clip(tmp_path / "fan" / "train" / "section_00_source_train_normal_0000_noAttribute.wav")
    datasets = {r.machine_type: r.dataset for r in read_manifest(tmp_path)}
    assert datasets == {"ToyCar": "toyadmos2", "fan": "dcase2021"}
    assert read_manifest(tmp_path, "toyadmos2").unique("dataset") == ["toyadmos2"]


def test_list_machine_types(trees: dict[str, Path]) -> None:
    assert list_machine_types(trees["mimii"]) == ["fan", "valve"]


# ------------------------------------------------------------------ errors
def test_missing_and_empty_roots(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"nowhere does not exist"):
        read_manifest(tmp_path / "nowhere")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match=r"empty is empty"):
        read_manifest(tmp_path / "empty")


def test_unrecognised_layout_lists_what_was_tried(tmp_path: Path) -> None:
    _write_clip(tmp_path / "misc" / "recording.wav")
    with pytest.raises(LayoutNotRecognisedError) as info:
        read_manifest(tmp_path)
    message = str(info.value)
    assert "recording.wav" in message
    for layout, example in [
        ("mimii", "0_dB_fan/fan/id_00/normal/00000000.wav"),
        ("dcase2020", "dev_data/fan/train/normal_id_00_00000000.wav"),
        ("dcase2021", "fan/train/section_00_source_train_normal_0000_m-n_W.wav"),
    ]:
        assert f"{layout}: e.g. {example}" in message


def test_explicit_layout_that_does_not_match(trees: dict[str, Path]) -> None:
    with pytest.raises(LayoutNotRecognisedError, match=r"tried:\n  mimii: e\.g\."):
        read_manifest(trees["dcase2020"], "mimii")
    with pytest.raises(ValueError, match="unknown layout 'dcase1999'"):
        read_manifest(trees["dcase2020"], "dcase1999")


def test_stray_wav_warns_or_raises_under_strict(tmp_path: Path) -> None:
    _write_clip(tmp_path / "fan" / "train" / "normal_id_00_00000000.wav")
    _write_clip(tmp_path / "fan" / "train" / "notes.wav")
    with pytest.warns(UserWarning, match=r"1 \.wav file\(s\) .* do not match layout 'dcase2020'"):
        assert len(read_manifest(tmp_path)) == 1
    with pytest.raises(LayoutNotRecognisedError, match=r"notes\.wav"):
        read_manifest(tmp_path, strict=True)


def test_symlinked_type_folder_is_read(tmp_path: Path) -> None:
    root = tmp_path / "dev_data"
    _write_clip(root / "fan" / "train" / "normal_id_00_00000000.wav")
    _write_clip(tmp_path / "other_disk" / "valve" / "train" / "normal_id_00_00000000.wav")
    (root / "valve").symlink_to(tmp_path / "other_disk" / "valve", target_is_directory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing to skip
        manifest = read_manifest(root)
    assert manifest.machine_types == ["fan", "valve"]
    assert str(root / "valve" / "train") in manifest.filter(machine_type="valve")[0].path


def test_bad_paths_are_named_in_the_one_warning_or_raise_under_strict(tmp_path: Path) -> None:
    train = tmp_path / "fan" / "train"
    _write_clip(train / "normal_id_00_00000000.wav")
    _write_clip(train / "notes.wav")
    (train / "normal_id_00_00000001.wav").symlink_to(tmp_path / "moved.wav")  # dangling
    (train / "loop").symlink_to(tmp_path, target_is_directory=True)
    (train / "normal_id_00_00000002.wav").mkdir()  # a folder named like a clip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        manifest = read_manifest(tmp_path)
    assert [Path(r.path).name for r in manifest] == ["normal_id_00_00000000.wav"]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("skipping 1 .wav file(s) under")
    assert "notes.wav" in message and "3 path(s) under" in message
    assert f"{train / 'normal_id_00_00000001.wav'}: dangling symlink" in message
    assert f"{train / 'loop'}: symlink loop" in message
    assert f"{train / 'normal_id_00_00000002.wav'}: not a regular file (directory named" in message
    with pytest.raises(LayoutNotRecognisedError, match=r"(?s)notes\.wav.*dangling symlink"):
        read_manifest(tmp_path, strict=True)


def test_only_dangling_links_name_them_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "fan" / "train").mkdir(parents=True)
    (tmp_path / "fan" / "train" / "normal_id_00_00000000.wav").symlink_to(tmp_path / "gone.wav")
    with pytest.raises(LayoutNotRecognisedError, match=r"(?s)no \.wav files.*dangling symlink"):
        read_manifest(tmp_path)


# ------------------------------------------------------------------ real clips
DCASE2020_MINI_COUNTS = {  # (normal, anomaly) test clips per type, counted from the files
    "ToyCar": (11, 11),
    "ToyConveyor": (9, 9),
    "fan": (12, 11),
    "pump": (13, 9),
    "slider": (11, 10),
    "valve": (11, 11),
}


@pytest.mark.real_data
def test_real_mimii_mini(mimii_mini: Path) -> None:
    assert detect_layout(mimii_mini) == "mimii"
    manifest = read_manifest(mimii_mini)
    assert len(manifest) == 32
    assert manifest.machine_types == ["fan", "pump", "slider", "valve"]
    assert manifest.unique("machine_id") == ["id_00", "id_02", "id_04", "id_06"]
    assert {r.attributes["snr"] for r in manifest} == {"0_dB"}
    counts = manifest.counts()
    for machine_type in manifest.machine_types:
        for machine_id in manifest.unique("machine_id"):
            assert counts[(machine_type, machine_id, "test", "anomaly")] == 1
            assert counts[(machine_type, machine_id, "test", "normal")] == 1
            assert counts[(machine_type, machine_id, "train", "normal")] == 0
    abnormal = [r for r in manifest if "/abnormal/" in r.path]
    assert len(abnormal) == 16 and all(r.label == "anomaly" for r in abnormal)


@pytest.mark.real_data
def test_real_dcase2020_mini(dcase2020_mini: Path) -> None:
    assert detect_layout(dcase2020_mini) == "dcase2020"
    manifest = read_manifest(dcase2020_mini)
    assert len(manifest) == 128
    assert set(manifest.unique("split")) == {"test"}
    for machine_type, (normal, anomaly) in DCASE2020_MINI_COUNTS.items():
        labels = Counter(r.label for r in manifest.filter(machine_type=machine_type))
        assert labels == {"normal": normal, "anomaly": anomaly}
    toy_car_ids = manifest.filter(machine_type="ToyCar").unique("machine_id")
    assert toy_car_ids == ["id_01", "id_02", "id_03", "id_04"]
    for record in manifest:
        assert Path(record.path).name.startswith(f"{record.label}_{record.machine_id}_")
