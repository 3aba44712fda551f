"""Decode WAV clips into float32 tensors, and screen clips before a run.

Pad/crop rule: a clip longer than ``num_samples`` keeps its first ``num_samples``; a shorter
one is zero-padded at the end. Resampling (``torchaudio.functional.resample``) happens
before the rule is applied, so ``num_samples`` is always counted at the target rate.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from tqdm.auto import tqdm

from aad.data.manifest import ClipRecord, Manifest

Channel = int | str
MAX_PEAK = 1e4
"""Largest absolute sample value screened clips may have: no recording is 80 dB above full
scale, and values near 1e20 overflow the float32 STFT (NaN scores)."""
PROGRESS_MIN_CLIPS = 500


class AudioDecodeError(ValueError):
    """A clip could not be decoded into finite samples (the message names the file)."""


def check_channel(channel: Channel) -> None:
    """Raise ``ValueError`` unless ``channel`` is a non-negative int or ``"mean"``."""
    if channel == "mean":
        return
    if isinstance(channel, bool) or not isinstance(channel, int) or channel < 0:
        raise ValueError(f"channel must be a non-negative int or 'mean', got {channel!r}")


def channel_error(path: str | Path, channel: Channel, channels: int) -> AudioDecodeError:
    """The error for a channel index the file does not have."""
    return AudioDecodeError(
        f"{path}: channel {channel} requested but the file has {channels} channel(s) "
        f"(valid: 0..{channels - 1} or 'mean')"
    )


def pad_or_crop(waveform: torch.Tensor, num_samples: int | None) -> torch.Tensor:
    """Keep the first ``num_samples``; zero-pad shorter clips at the end.

    >>> pad_or_crop(torch.ones(3), 5).tolist()
    [1.0, 1.0, 1.0, 0.0, 0.0]
    """
    if num_samples is None:
        return waveform
    length = waveform.shape[-1]
    if length >= num_samples:
        return waveform[..., :num_samples]
    return torch.nn.functional.pad(waveform, (0, num_samples - length))


def _frames_to_read(num_samples: int | None, file_rate: int, sample_rate: int) -> int:
    """How many source frames cover ``num_samples`` output samples (-1 = all)."""
    if num_samples is None:
        return -1
    if file_rate == sample_rate:
        return num_samples
    # a little margin so the resampler's filter has context at the crop point
    return math.ceil(num_samples * file_rate / sample_rate) + 64


def load_waveform(
    path: str | Path,
    sample_rate: int = 16000,
    channel: Channel = 0,
    num_samples: int | None = None,
) -> torch.Tensor:
    """Decode one clip to float32 ``(num_samples,)`` (or the file's length when ``None``).

    ``channel`` is an index into the file's channels or ``"mean"`` (mix to mono).
    Raises :class:`AudioDecodeError` for undecodable, empty or non-finite clips and for a
    channel the file lacks. Silent and out-of-range clips load as they are:
    :func:`screen_clips` reports them once, before a run.
    """
    check_channel(channel)
    try:
        with sf.SoundFile(str(path)) as handle:
            file_rate, channels = handle.samplerate, handle.channels
            if channel != "mean" and channel >= channels:
                raise channel_error(path, channel, channels)
            frames = _frames_to_read(num_samples, file_rate, sample_rate)
            data = handle.read(frames=frames, dtype="float32", always_2d=True)
    except AudioDecodeError:
        raise
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        raise AudioDecodeError(f"cannot decode {path}: {err}") from err
    if data.shape[0] == 0:
        raise AudioDecodeError(f"{path} has no samples (zero-length audio)")
    mono = data.mean(axis=1) if channel == "mean" else data[:, channel]
    bad = int(np.count_nonzero(~np.isfinite(mono)))
    if bad:
        raise AudioDecodeError(f"{path} has {bad} NaN/Inf sample(s)")
    waveform = torch.from_numpy(np.ascontiguousarray(mono, dtype=np.float32))
    if file_rate != sample_rate:
        waveform = AF.resample(waveform, file_rate, sample_rate)
    return pad_or_crop(waveform, num_samples)


def _riff_truncated(path: Path) -> bool:
    """True when a RIFF/WAVE file's data chunk declares more bytes than the file holds."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            head = handle.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return False
            offset = 12
            while offset + 8 <= size:
                handle.seek(offset)
                chunk_id, chunk_size = struct.unpack("<4sI", handle.read(8))
                if chunk_id == b"data":
                    if chunk_size in (0, 0xFFFFFFFF):  # streaming writers leave it unset
                        return False
                    return offset + 8 + chunk_size > size
                offset += 8 + chunk_size + (chunk_size & 1)
    except OSError:
        return False
    return False


def clip_problem(path: str | Path) -> str | None:
    """Why a clip's header is unusable (``None`` when it looks fine). Cheap: no decode."""
    return _header(path)[0]


def _header(path: str | Path) -> tuple[str | None, Any]:
    """``(problem, None)`` for an unusable header, else ``(None, soundfile info)``."""
    path = Path(path)
    if not path.is_file():
        return ("not a regular file" if path.exists() else "file not found"), None
    if path.stat().st_size == 0:
        return "zero-length file", None
    try:
        info = sf.info(str(path))
    except (sf.SoundFileError, RuntimeError) as err:
        return f"not readable audio ({err})", None
    if info.frames == 0:
        return "no audio frames", None
    if _riff_truncated(path):
        return "truncated (data chunk shorter than its header says)", None
    return None, info


@dataclass(frozen=True)
class Rejected:
    """A clip left out by :func:`screen_clips`, and why."""

    record: ClipRecord
    reason: str


@dataclass
class ScreenResult:
    """What :func:`screen_clips` kept, what it left out (with reasons), and the rates seen."""

    good: Manifest
    rejected: list[Rejected] = field(default_factory=list)
    rates: set[int] = field(default_factory=set)

    def describe(self, what: str) -> str:
        """One message: ``"<what>: N clip(s) skipped:"``, then ``"  path: reason"`` per clip."""
        lines = "".join(f"\n  {r.record.path}: {r.reason}" for r in self.rejected)
        return f"{what}: {len(self.rejected)} clip(s) skipped:{lines}"


def _read_samples(path: str, subtype: str) -> np.ndarray:
    """All frames as ``(frames, channels)``: int16 for 16-bit PCM (fast, exact), int32 for
    other integer PCM, float64 for DOUBLE, else float32."""
    if subtype == "PCM_16":
        dtype = "int16"
    elif subtype.startswith("PCM_"):
        dtype = "int32"
    else:
        dtype = "float64" if subtype == "DOUBLE" else "float32"
    data, _ = sf.read(path, dtype=dtype, always_2d=True)
    return data


def _sample_problem(path: str, info: Any, channel: Channel, reject_silent: bool) -> str | None:
    """Why a clip's samples are unusable (``None`` when fine): decoded once, not resampled."""
    try:
        data = _read_samples(path, info.subtype)
    except (sf.SoundFileError, RuntimeError, OSError) as err:
        return f"cannot decode ({err})"
    if data.shape[0] < info.frames:
        return f"truncated (decoded {data.shape[0]} of {info.frames} frames)"
    floating = data.dtype.kind == "f"  # integer PCM is always finite and within full scale
    if channel == "mean":
        mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    else:
        mono = data[:, channel]
    if floating:
        finite = np.isfinite(mono)
        bad = mono.size - int(np.count_nonzero(finite))
        if bad:
            return f"{bad} NaN/Inf samples"
        peak = float(np.max(np.abs(mono)))
        if peak > MAX_PEAK:
            return f"peak {peak:.3g}: not audio in [-1, 1]"
    if reject_silent and not np.any(mono):
        return "silent (all samples zero)"
    return None


def _screen_one(
    record: ClipRecord,
    sample_rate: int,
    channel: Channel,
    min_samples: int,
    reject_silent: bool,
    decode: bool,
) -> tuple[str | None, int | None]:
    """``(reason or None, file rate or None)`` for one clip; a missing channel raises."""
    problem, info = _header(record.path)
    if problem is not None:
        return problem, None
    if channel != "mean" and channel >= info.channels:
        raise channel_error(record.path, channel, info.channels)
    rate = int(info.samplerate)
    if min_samples and math.ceil(info.frames * sample_rate / rate) < min_samples:
        seconds, wanted = info.frames / rate, min_samples / sample_rate
        return f"too short: {seconds:.2f} s < {wanted:.2f} s", rate
    if decode:
        return _sample_problem(str(record.path), info, channel, reject_silent), rate
    return None, rate


def screen_clips(
    records: Iterable[ClipRecord],
    sample_rate: int = 16000,
    channel: Channel = 0,
    *,
    min_samples: int = 0,
    reject_silent: bool = True,
    decode: bool = True,
    progress: bool = True,
) -> ScreenResult:
    """Check every clip once and say why each bad one is bad.

    Rejected (with a reason): unreadable, zero-length, truncated or non-audio files; clips
    shorter than ``min_samples`` (counted at ``sample_rate``); and, when ``decode`` (each
    clip is read once at its own rate, never resampled), NaN/Inf samples, a peak above
    :data:`MAX_PEAK` (not audio: it would overflow the float32 STFT) and, when
    ``reject_silent`` (training clips), all-zero clips. A ``channel`` index beyond a file's
    channels raises :class:`AudioDecodeError` at once. ``progress``: a tqdm bar (shown on a
    terminal) when there are many clips.

    >>> result = screen_clips(manifest, min_samples=16000)  # doctest: +SKIP
    >>> if result.rejected: warnings.warn(result.describe("training clips"))  # doctest: +SKIP
    """
    check_channel(channel)
    records = list(records)
    show = progress and len(records) >= PROGRESS_MIN_CLIPS
    good: list[ClipRecord] = []
    rejected: list[Rejected] = []
    rates: set[int] = set()
    bar = tqdm(
        records, desc="screening clips", unit="clip", leave=False, disable=None if show else True
    )
    for record in bar:
        reason, rate = _screen_one(record, sample_rate, channel, min_samples, reject_silent, decode)
        if reason is None:
            good.append(record)
            rates.add(rate)
        else:
            rejected.append(Rejected(record, reason))
    return ScreenResult(Manifest(good), rejected, rates)


def clip_num_samples(path: str | Path, sample_rate: int = 16000) -> int:
    """A clip's length in samples at ``sample_rate`` (from its header)."""
    info = sf.info(str(path))
    return math.ceil(info.frames * sample_rate / info.samplerate)


def clip_lengths(records: Iterable[ClipRecord], sample_rate: int = 16000) -> list[int]:
    """Every clip's length in samples at ``sample_rate`` (from its header)."""
    return [clip_num_samples(record.path, sample_rate) for record in records]
