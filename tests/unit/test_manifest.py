"""Manifest: filtering, counts and a lossless CSV round trip."""

from __future__ import annotations

from pathlib import Path

import pytest

from aad.data.manifest import ClipRecord, Manifest


def _records() -> list[ClipRecord]:
    return [
        ClipRecord(
            "a.wav",
            "dcase2021",
            "fan",
            "section_00",
            "train",
            "normal",
            "source",
            {"m-n": "W", "note": "a;b=c"},
        ),
        ClipRecord("b.wav", "dcase2021", "fan", "section_00", "test", "anomaly", "target"),
        ClipRecord("c.wav", "dcase2021", "pump", "section_01", "test", "unknown"),
    ]


def test_csv_round_trip_keeps_attributes_with_separators(tmp_path: Path) -> None:
    manifest = Manifest(_records())
    loaded = Manifest.from_csv(manifest.to_csv(tmp_path / "manifest.csv"))
    assert [r.__dict__ for r in loaded] == [r.__dict__ for r in manifest]


def test_filter_counts_and_targets() -> None:
    manifest = Manifest(_records())
    assert [r.path for r in manifest.filter(machine_type="fan", split=["test"])] == ["b.wav"]
    assert manifest.filter(machine_id=None).machine_types == ["fan", "pump"]
    assert [r.target for r in manifest] == [0, 1, -1]
    assert manifest.counts()[("fan", "section_00", "train", "normal")] == 1
    assert "3 clips (dcase2021)" in manifest.summary()


def test_bad_label_is_refused() -> None:
    with pytest.raises(ValueError, match="label must be one of"):
        ClipRecord("a.wav", "mimii", "fan", "id_00", "train", "abnormal")


def test_attribute_label_is_the_id_with_its_sorted_attributes_except_snr() -> None:
    with_attrs = ClipRecord("a.wav", "dcase2021", "fan", "section_00", "train", "normal",
                            "source", {"vel": "8", "loc": "A"})  # fmt: skip
    assert with_attrs.attribute_label == "section_00|loc_A|vel_8"
    mimii = ClipRecord("b.wav", "mimii", "fan", "id_00", "test", "normal", "", {"snr": "6_dB"})
    assert mimii.attribute_label == "id_00"  # a mix level, not a machine setting
    assert _records()[1].attribute_label == "section_00"
