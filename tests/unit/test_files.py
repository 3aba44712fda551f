"""The WAV file walker: symlinked folders followed, loops guarded, bad paths named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from aad.data.files import collect_wav_files, walk_wav_files


def _clip(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.full(400, 0.1, dtype=np.float32), 16000, subtype="PCM_16")
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """``root/fan`` real, ``root/pump`` a link to a folder outside, plus every bad path."""
    root = tmp_path / "root"
    _clip(root / "fan" / "train" / "normal_id_00_00000000.wav")
    _clip(root / "fan" / "train" / "normal_id_00_00000001.WAV")  # any case
    _clip(tmp_path / "elsewhere" / "pump" / "test" / "anomaly_id_00_00000000.wav")
    (root / "pump").symlink_to(tmp_path / "elsewhere" / "pump", target_is_directory=True)
    (root / "fan" / "up").symlink_to(root, target_is_directory=True)  # a loop to a folder above
    (root / "fan" / "train" / "gone.wav").symlink_to(tmp_path / "nowhere.wav")  # dangling
    (root / "fan" / "train" / "self.wav").symlink_to(root / "fan" / "train" / "self.wav")
    (root / "fan" / "test" / "x.wav").mkdir(parents=True)  # a folder, not a clip
    _clip(root / "fan" / "train" / "._normal_id_00_00000000.wav")  # hidden: ignored
    _clip(root / ".cache" / "fan" / "train" / "normal_id_00_00000009.wav")
    (root / "fan" / "attributes_00.csv").write_text("file_name\n")
    return root


def test_walk_follows_symlinked_folders_and_names_every_bad_path(tree: Path) -> None:
    result = walk_wav_files(tree)
    assert [p.relative_to(tree).as_posix() for p in result.files] == [
        "fan/train/normal_id_00_00000000.wav",
        "fan/train/normal_id_00_00000001.WAV",
        "pump/test/anomaly_id_00_00000000.wav",  # under the link's name, not its target's
    ]
    reasons = {p.relative_to(tree).as_posix(): reason for p, reason in result.skipped}
    assert set(reasons) == {"fan/up", "fan/train/gone.wav", "fan/train/self.wav", "fan/test/x.wav"}
    assert reasons["fan/up"].startswith("symlink loop")
    assert reasons["fan/train/gone.wav"] == f"dangling symlink (-> {tree.parent / 'nowhere.wav'})"
    assert reasons["fan/train/self.wav"] == "symlink loop"
    assert reasons["fan/test/x.wav"] == "not a regular file (directory named .wav)"
    assert result.other_files == 1  # the CSV
    assert "fan/train/gone.wav: dangling symlink" in result.describe().replace(f"{tree}/", "")


def test_walk_reads_a_folder_linked_twice_once(tmp_path: Path) -> None:
    _clip(tmp_path / "fan" / "train" / "normal_id_00_00000000.wav")
    (tmp_path / "fan_again").symlink_to(tmp_path / "fan", target_is_directory=True)
    result = walk_wav_files(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in result.files] == [
        "fan/train/normal_id_00_00000000.wav"
    ]
    assert result.skipped == [
        (tmp_path / "fan_again", f"same folder as {tmp_path / 'fan'} (read once)")
    ]


def test_collect_takes_files_and_folders_but_never_a_folder_as_a_clip(tree: Path) -> None:
    clip = tree / "fan" / "train" / "normal_id_00_00000000.wav"
    result = collect_wav_files([clip, tree / "pump", tree / "fan" / "test" / "x.wav", clip])
    assert result.files == [clip, tree / "pump" / "test" / "anomaly_id_00_00000000.wav"]
    assert collect_wav_files([tree / "fan" / "test"]).files == []  # x.wav is a folder
    walked = collect_wav_files([tree])
    assert walked.files == walk_wav_files(tree).files
    assert len(walked.skipped) == 4


def test_collect_names_a_missing_input(tree: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no such file or folder: .*missing\.wav"):
        collect_wav_files([tree / "fan", tree / "missing.wav"])
    with pytest.raises(FileNotFoundError, match=r"dangling symlink: .*gone\.wav"):
        collect_wav_files([tree / "fan" / "train" / "gone.wav"])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_special_file_named_wav_is_skipped(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.wav")
    result = walk_wav_files(tmp_path)
    assert result.files == []
    assert result.skipped == [
        (tmp_path / "pipe.wav", "not a regular file (device, pipe or socket)")
    ]
