"""Decoding, resampling, channel selection, pad/crop and the bad-input checks."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aad.data.audio import (
    MAX_PEAK,
    AudioDecodeError,
    clip_lengths,
    clip_problem,
    load_waveform,
    pad_or_crop,
    screen_clips,
)
from aad.data.manifest import ClipRecord, Manifest


def _write(path: Path, data: np.ndarray, sr: int = 16000, **kwargs: str) -> Path:
    sf.write(path, data, sr, **kwargs)
    return path


def _record(path: Path) -> ClipRecord:
    return ClipRecord(str(path), "test", "fan", "id_00", "test", "normal")


@pytest.fixture()
def tone(tmp_path: Path) -> Path:
    t = np.arange(16000) / 16000
    return _write(tmp_path / "tone.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))


@pytest.fixture()
def bad_files(tmp_path: Path) -> dict[str, Path]:
    good = _write(tmp_path / "good.wav", np.full(1600, 0.1, dtype=np.float32), subtype="PCM_16")
    raw = good.read_bytes()
    files = {
        "truncated": tmp_path / "truncated.wav",
        "zero_length": tmp_path / "zero_length.wav",
        "not_audio": tmp_path / "not_audio.wav",
        "header_only": tmp_path / "header_only.wav",
    }
    files["truncated"].write_bytes(raw[: len(raw) // 2])
    files["zero_length"].write_bytes(b"")
    files["not_audio"].write_text("this is a text file, not audio\n" * 20)
    files["header_only"].write_bytes(raw[:30])
    files["good"] = good
    return files


def test_load_mono_float32(tone: Path) -> None:
    waveform = load_waveform(tone)
    assert waveform.dtype == torch.float32 and waveform.shape == (16000,)
    assert abs(float(waveform.abs().max()) - 0.5) < 1e-3


def test_crop_keeps_first_samples_and_pad_appends_zeros(tone: Path) -> None:
    full = load_waveform(tone)
    cropped = load_waveform(tone, num_samples=4000)
    assert torch.equal(cropped, full[:4000])
    padded = load_waveform(tone, num_samples=20000)
    assert padded.shape == (20000,)
    assert torch.equal(padded[:16000], full) and not padded[16000:].any()
    assert pad_or_crop(torch.ones(3), 5).tolist() == [1, 1, 1, 0, 0]


def test_resamples_22050_to_16000(tmp_path: Path) -> None:
    t = np.arange(22050) / 22050
    path = _write(
        tmp_path / "r.wav", (0.3 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), 22050
    )
    waveform = load_waveform(path, sample_rate=16000)
    assert waveform.shape == (16000,)
    spectrum = torch.fft.rfft(waveform).abs()
    assert int(spectrum.argmax()) == 1000  # 1 kHz stays 1 kHz (1 Hz per bin over 1 s)
    assert load_waveform(path, sample_rate=16000, num_samples=8000).shape == (8000,)


@pytest.fixture()
def eight_channels(tmp_path: Path) -> Path:
    data = np.tile(np.arange(8, dtype=np.float32) / 10, (800, 1))
    return _write(tmp_path / "mc.wav", data, subtype="PCM_16", format="WAVEX")


def test_channel_selection(eight_channels: Path) -> None:
    assert sf.info(str(eight_channels)).channels == 8
    assert torch.allclose(
        load_waveform(eight_channels, channel=3), torch.full((800,), 0.3), atol=1e-4
    )
    assert torch.allclose(
        load_waveform(eight_channels, channel="mean"), torch.full((800,), 0.35), atol=1e-4
    )


def test_channel_beyond_file_names_file_and_count(eight_channels: Path) -> None:
    with pytest.raises(AudioDecodeError, match=r"mc\.wav: channel 8 requested but the file has 8"):
        load_waveform(eight_channels, channel=8)
    with pytest.raises(AudioDecodeError, match="has 8 channel"):
        screen_clips([_record(eight_channels)], channel=8)
    with pytest.raises(ValueError, match="non-negative int or 'mean'"):
        load_waveform(eight_channels, channel="left")


def test_real_mimii_channels(mimii_mini: Path) -> None:
    path = mimii_mini / "0_dB_fan" / "fan" / "id_00" / "normal" / "00000000.wav"
    first, mixed = load_waveform(path, channel=0), load_waveform(path, channel="mean")
    assert first.shape == mixed.shape == (160000,)
    assert not torch.allclose(first, mixed)
    data, _ = sf.read(str(path), dtype="float32")
    assert torch.allclose(load_waveform(path, channel=5), torch.from_numpy(data[:, 5]))
    with pytest.raises(AudioDecodeError, match="channel 8 requested but the file has 8"):
        load_waveform(path, channel=8)


def test_nan_and_inf_raise_naming_clip_and_count(tmp_path: Path) -> None:
    data = np.zeros(100, dtype=np.float32) + 0.1
    data[[3, 10]] = np.nan
    data[50] = np.inf
    path = _write(tmp_path / "nan.wav", data, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match=r"nan\.wav has 3 NaN/Inf sample"):
        load_waveform(path)


def test_silence_loads_without_a_warning_per_clip(tmp_path: Path) -> None:
    path = _write(tmp_path / "quiet.wav", np.zeros(800, dtype=np.float32), subtype="PCM_16")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # screen_clips reports silence once, not every load
        waveform = load_waveform(path)
    assert torch.isfinite(waveform).all() and not waveform.any()


def test_empty_audio_and_garbage_raise_on_load(tmp_path: Path, bad_files: dict) -> None:
    empty = _write(tmp_path / "empty.wav", np.zeros(0, dtype=np.float32))
    with pytest.raises(AudioDecodeError, match=r"empty\.wav has no samples"):
        load_waveform(empty)
    with pytest.raises(AudioDecodeError, match=r"cannot decode .*not_audio\.wav"):
        load_waveform(bad_files["not_audio"])


def test_clip_problem_names_each_kind(bad_files: dict) -> None:
    assert clip_problem(bad_files["good"]) is None
    assert clip_problem(bad_files["truncated"]).startswith("truncated")
    assert clip_problem(bad_files["zero_length"]) == "zero-length file"
    assert clip_problem(bad_files["not_audio"]).startswith("not readable audio")
    assert clip_problem(bad_files["header_only"]).startswith("not readable audio")


def test_screen_names_every_bad_header_in_one_message(bad_files: dict) -> None:
    manifest = Manifest(_record(p) for p in bad_files.values())
    result = screen_clips(manifest, 16000, decode=False, progress=False)
    assert [Path(r.path).name for r in result.good] == ["good.wav"]
    message = result.describe("training clips")
    assert message.startswith("training clips: 4 clip(s) skipped:")
    for name in ("truncated.wav", "zero_length.wav", "not_audio.wav", "header_only.wav"):
        assert name in message


def test_screen_reports_the_sample_rates_seen(tmp_path: Path, tone: Path) -> None:
    other = _write(tmp_path / "r22.wav", np.full(2205, 0.1, dtype=np.float32), 22050)
    result = screen_clips([_record(tone), _record(other)], 16000, progress=False)
    assert len(result.good) == 2 and result.rates == {16000, 22050}


def test_header_screening_reads_each_header_once(
    tmp_path: Path, tone: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = _write(tmp_path / "other.wav", np.full(1600, 0.1, dtype=np.float32))
    calls: list[str] = []
    real_info = sf.info

    def counting_info(path, *args, **kwargs):
        calls.append(str(path))
        return real_info(path, *args, **kwargs)

    monkeypatch.setattr(sf, "info", counting_info)
    kept = screen_clips([_record(tone), _record(other)], 16000, decode=False, progress=False)
    assert len(kept.good) == 2
    assert sorted(calls) == sorted([str(tone), str(other)])  # not twice per clip


# ------------------------------------------------------------------ screening
def _tone(seconds: float, sr: int = 16000, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * sr))) / sr
    return (amplitude * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture()
def screened(tmp_path: Path, bad_files: dict) -> dict[str, Path]:
    """One good clip and one clip per way of being bad, with the reason each must get."""
    nan = _tone(1.0)
    nan[[3, 10]] = np.nan
    nan[50] = np.inf
    return {
        "good": _write(tmp_path / "fine.wav", _tone(1.0), subtype="PCM_16"),
        "silent": _write(tmp_path / "silent.wav", np.zeros(16000, np.float32), subtype="PCM_16"),
        "short": _write(tmp_path / "short.wav", _tone(0.1), subtype="PCM_16"),
        "nan": _write(tmp_path / "nan.wav", nan, subtype="FLOAT"),
        "huge": _write(tmp_path / "huge.wav", _tone(1.0) * np.float32(1e20), subtype="FLOAT"),
        "truncated": bad_files["truncated"],
        "zero_length": bad_files["zero_length"],
        "not_audio": bad_files["not_audio"],
    }


SCREEN_REASONS = {
    "silent": "silent (all samples zero)",
    "short": "too short: 0.10 s < 0.50 s",
    "nan": "3 NaN/Inf samples",
    "huge": "peak 5e+19: not audio in [-1, 1]",
    "truncated": "truncated (data chunk shorter than its header says)",
    "zero_length": "zero-length file",
    "not_audio": "not readable audio",  # followed by soundfile's own words
}


def test_screen_names_why_each_bad_clip_is_bad(screened: dict[str, Path]) -> None:
    result = screen_clips([_record(p) for p in screened.values()], 16000, min_samples=8000)
    assert [Path(r.path).name for r in result.good] == ["fine.wav"]
    reasons = {Path(r.record.path).name: r.reason for r in result.rejected}
    assert len(reasons) == len(SCREEN_REASONS)
    for name, reason in SCREEN_REASONS.items():
        assert reasons[screened[name].name].startswith(reason), name
    assert result.rates == {16000}
    lines = result.describe("training clips").splitlines()
    assert lines[0] == "training clips: 7 clip(s) skipped:"
    assert f"  {screened['silent']}: silent (all samples zero)" in lines
    assert len(lines) == 8


def test_screen_keeps_silence_for_test_clips_and_checks_only_headers_fast(
    screened: dict[str, Path],
) -> None:
    records = [_record(screened[name]) for name in ("good", "silent", "nan", "huge", "truncated")]
    kept = screen_clips(records, reject_silent=False).good
    assert [Path(r.path).name for r in kept] == ["fine.wav", "silent.wav"]
    header_only = screen_clips(records, decode=False)
    assert [Path(r.path).name for r in header_only.good] == [
        "fine.wav", "silent.wav", "nan.wav", "huge.wav",
    ]  # fmt: skip
    assert [r.reason[:9] for r in header_only.rejected] == ["truncated"]


def test_screen_peak_limit_and_length_at_the_target_rate(tmp_path: Path) -> None:
    loud = _write(tmp_path / "loud.wav", np.full(16000, MAX_PEAK, np.float32), subtype="FLOAT")
    louder = _write(
        tmp_path / "louder.wav", np.full(16000, 2 * MAX_PEAK, np.float32), subtype="FLOAT"
    )
    slow = _write(tmp_path / "slow.wav", _tone(0.5, sr=8000), 8000, subtype="PCM_16")
    result = screen_clips([_record(p) for p in (loud, louder, slow)], 16000, min_samples=8000)
    assert [Path(r.path).name for r in result.good] == ["loud.wav", "slow.wav"]
    assert result.rejected[0].reason == "peak 2e+04: not audio in [-1, 1]"
    assert result.rates == {16000, 8000}
    short = screen_clips([_record(slow)], 16000, min_samples=8001).rejected
    assert [r.reason for r in short] == ["too short: 0.50 s < 0.50 s"]
    assert clip_lengths([_record(slow), _record(loud)], 16000) == [8000, 16000]


def test_screen_reads_the_requested_channel(tmp_path: Path) -> None:
    data = np.zeros((1600, 2), np.float32)
    data[:, 1] = 0.25
    path = _write(tmp_path / "two.wav", data, subtype="PCM_16")
    assert len(screen_clips([_record(path)], channel=0).rejected) == 1  # channel 0 is silent
    assert len(screen_clips([_record(path)], channel=1).good) == 1
    assert len(screen_clips([_record(path)], channel="mean").good) == 1
    with pytest.raises(AudioDecodeError, match=r"two\.wav: channel 2 requested but the file has 2"):
        screen_clips([_record(path)], channel=2)
    with pytest.raises(ValueError, match="non-negative int or 'mean'"):
        screen_clips([_record(path)], channel=-1)


def test_screen_decodes_each_clip_once(
    screened: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_read = sf.read

    def counting_read(path, *args, **kwargs):
        calls.append(str(path))
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(sf, "read", counting_read)
    names = ("good", "silent", "nan", "huge")
    result = screen_clips([_record(screened[n]) for n in names], progress=False)
    assert len(result.good) == 1
    assert sorted(calls) == sorted(str(screened[n]) for n in names)
