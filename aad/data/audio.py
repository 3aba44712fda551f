"""Decode WAV clips into float32 tensors, and check clip headers before a run.

Pad/crop rule: a clip longer than ``num_samples`` keeps its first ``num_samples``; a shorter
one is zero-padded at the end. Resampling (``torchaudio.functional.resample``) happens
before the rule is applied, so ``num_samples`` is always counted at the target rate.
"""

from __future__ import annotations

import math
import struct
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

from aad.data.manifest import ClipRecord, Manifest

Channel = int | str


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
    channel the file lacks; warns when the clip is all zeros (silence).
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
    if not np.any(mono):
        warnings.warn(f"{path} is silent (all samples are zero)", stacklevel=2)
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
        return "file not found", None
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


def validate_clips(
    manifest: Manifest | Iterable[ClipRecord],
    sample_rate: int = 16000,
    strict: bool = False,
    channel: Channel | None = None,
) -> Manifest:
    """Check every clip's header up front; return the manifest without the bad clips.

    Bad clips (corrupt, truncated, zero-length, not audio) are skipped with ONE warning
    listing them, or raise :class:`AudioDecodeError` when ``strict``. Clips whose rate
    differs from ``sample_rate`` get one warning naming the rates (they are resampled on
    load). A ``channel`` index beyond a file's channels always raises.
    """
    if channel is not None:
        check_channel(channel)
    good: list[ClipRecord] = []
    bad: list[str] = []
    rates: set[int] = set()
    for record in manifest:
        problem, info = _header(record.path)  # one header read per clip
        if problem is not None:
            bad.append(f"{record.path}: {problem}")
            continue
        if isinstance(channel, int) and channel >= info.channels:
            raise channel_error(record.path, channel, info.channels)
        rates.add(int(info.samplerate))
        good.append(record)
    if bad:
        listing = "\n  ".join(bad)
        message = f"{len(bad)} unreadable clip(s)"
        if strict:
            raise AudioDecodeError(f"{message}:\n  {listing}")
        warnings.warn(f"skipping {message}:\n  {listing}", stacklevel=2)
    if rates - {sample_rate}:
        names = ", ".join(str(r) for r in sorted(rates))
        warnings.warn(
            f"clips have sample rates {names} Hz; they will be resampled to {sample_rate} Hz",
            stacklevel=2,
        )
    return Manifest(good)


def clip_num_samples(path: str | Path, sample_rate: int = 16000) -> int:
    """A clip's length in samples at ``sample_rate`` (from its header)."""
    info = sf.info(str(path))
    return math.ceil(info.frames * sample_rate / info.samplerate)
