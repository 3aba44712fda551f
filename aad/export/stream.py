"""Live audio sources for ``watch``: raw 16-bit PCM on a pipe, a WAV file being written, and
new files in a folder. numpy only (no torch), POSIX ``select`` for pipes.

A stream source's :meth:`read` waits at most ``timeout`` seconds and returns the new samples
(float32, mono, possibly empty); it raises :class:`EndOfStream` when the stream is over.
"""

from __future__ import annotations

import os
import select
import struct
import time
from pathlib import Path
from typing import BinaryIO

import numpy as np

READ_BYTES = 1 << 16
UNKNOWN_SIZES = (0, 0xFFFFFFFF)
"""``data`` chunk sizes writers leave while recording (arecord: 0x7FFFFFFF-ish, soundfile: 0)."""


class EndOfStream(Exception):
    """The source will give no more samples (EOF, or a WAV file read to its declared end)."""


def pcm16_to_float(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


class PipeSource:
    """Raw little-endian 16-bit PCM (``arecord -f S16_LE -c 1``) from a file descriptor."""

    def __init__(self, stream: BinaryIO, channels: int = 1) -> None:
        self.fd = stream.fileno()
        self.channels = int(channels)
        self.frame_bytes = 2 * self.channels
        self.pending = b""
        self.description = "raw S16_LE PCM on stdin"

    def read(self, timeout: float) -> np.ndarray:
        ready, _, _ = select.select([self.fd], [], [], max(timeout, 0.0))
        if not ready:
            return np.zeros(0, dtype=np.float32)
        raw = os.read(self.fd, READ_BYTES)
        if not raw:
            raise EndOfStream("end of input")
        raw = self.pending + raw
        usable = len(raw) - len(raw) % self.frame_bytes
        self.pending = raw[usable:]
        samples = pcm16_to_float(raw[:usable])
        if self.channels > 1:
            samples = samples.reshape(-1, self.channels)[:, 0]
        return samples


class WavFormat:
    """The fields of a WAV header that decoding needs."""

    def __init__(
        self, tag: int, channels: int, rate: int, bits: int, data_offset: int, data_size: int
    ) -> None:
        self.tag, self.channels, self.rate, self.bits = tag, channels, rate, bits
        self.data_offset, self.data_size = data_offset, data_size
        self.block = channels * bits // 8


def parse_wav_header(head: bytes) -> WavFormat | None:
    """``None`` while the header is incomplete; ``ValueError`` if it is not a PCM/float WAV."""
    if len(head) < 12:
        return None
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    offset, fmt = 12, None
    while offset + 8 <= len(head):
        chunk, size = (
            head[offset : offset + 4],
            struct.unpack("<I", head[offset + 4 : offset + 8])[0],
        )
        body = offset + 8
        if chunk == b"fmt ":
            if body + 16 > len(head):
                return None
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", head[body : body + 16])
            if tag == 0xFFFE and body + 26 <= len(head):  # WAVE_FORMAT_EXTENSIBLE: sub-format
                tag = struct.unpack("<H", head[body + 24 : body + 26])[0]
            fmt = (tag, channels, rate, bits)
        elif chunk == b"data":
            if fmt is None:
                raise ValueError("data chunk before fmt chunk")
            tag, channels, rate, bits = fmt
            if (tag, bits) not in ((1, 16), (1, 32), (3, 32)):
                raise ValueError(
                    f"WAV format tag {tag} with {bits} bits: only 16/32-bit PCM "
                    "and 32-bit float are tailed"
                )
            return WavFormat(tag, channels, rate, bits, body, size)
        offset = body + size + (size & 1)
    return None


def decode(raw: bytes, fmt: WavFormat) -> np.ndarray:
    """Whole frames of ``raw`` -> mono float32 (channel 0)."""
    if fmt.tag == 3:
        samples = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif fmt.bits == 16:
        samples = pcm16_to_float(raw)
    else:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2.0**31
    return samples.reshape(-1, fmt.channels)[:, 0] if fmt.channels > 1 else samples


class WavTailSource:
    """A WAV file that may still be growing: read its data as it arrives (``tail -f``).

    It ends when the header declares a data size (writers patch it on close) and that many
    bytes were read. ``from_end``: skip what the file holds when watching starts.
    """

    def __init__(self, path: str | Path, sample_rate: int, from_end: bool = False) -> None:
        self.path = Path(path)
        self.handle = open(self.path, "rb")  # noqa: SIM115 (closed by close())
        self.sample_rate = int(sample_rate)
        self.from_end = from_end
        self.fmt: WavFormat | None = None
        self.position = 0  # bytes of the data chunk consumed
        self.description = f"WAV file {self.path} (tailed)"

    def _header(self) -> WavFormat | None:
        self.handle.seek(0)
        fmt = parse_wav_header(self.handle.read(4096))
        if fmt is not None and fmt.rate != self.sample_rate:
            raise ValueError(
                f"{self.path} is {fmt.rate} Hz, the model scores {self.sample_rate} Hz audio"
            )
        return fmt

    def read(self, timeout: float) -> np.ndarray:
        if self.fmt is None:
            self.fmt = self._header()
            if self.fmt is None:
                time.sleep(timeout)
                return np.zeros(0, dtype=np.float32)
            if self.from_end:
                size = os.fstat(self.handle.fileno()).st_size - self.fmt.data_offset
                self.position = max(size - size % self.fmt.block, 0)
        fmt = self.fmt
        self.handle.seek(fmt.data_offset + self.position)
        limit = READ_BYTES - READ_BYTES % fmt.block
        declared = fmt.data_size not in UNKNOWN_SIZES
        if declared:
            limit = min(limit, fmt.data_size - self.position)
        raw = self.handle.read(limit)
        usable = len(raw) - len(raw) % fmt.block
        if usable:
            self.position += usable
            return decode(raw[:usable], fmt)
        latest = self._header()  # a writer that closed the file patched the sizes
        if latest is not None:
            fmt.data_size = latest.data_size
        if fmt.data_size not in UNKNOWN_SIZES and self.position >= fmt.data_size:
            raise EndOfStream(f"{self.path}: read to the end of its data chunk")
        time.sleep(timeout)
        return np.zeros(0, dtype=np.float32)

    def close(self) -> None:
        self.handle.close()


class FolderSource:
    """New ``.wav`` files in a folder, each yielded once complete (its size unchanged over
    one poll and its header's data size reached)."""

    def __init__(self, folder: str | Path, skip_existing: bool = False) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"folder to watch not found: {self.folder}")
        self.seen: set[Path] = set(self._listing()) if skip_existing else set()
        self.sizes: dict[Path, int] = {}
        self.description = f"new .wav files in {self.folder}"

    def _listing(self) -> list[Path]:
        files = [p for p in self.folder.iterdir() if p.suffix.lower() == ".wav" and p.is_file()]
        return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))

    def poll(self) -> list[Path]:
        """Files that became complete since the last poll (oldest first)."""
        ready = []
        for path in self._listing():
            if path in self.seen:
                continue
            size = path.stat().st_size
            if self.sizes.get(path) == size and _complete(path, size):
                self.seen.add(path)
                ready.append(path)
            self.sizes[path] = size
        return ready


def _complete(path: Path, size: int) -> bool:
    try:
        with open(path, "rb") as handle:
            fmt = parse_wav_header(handle.read(4096))
    except (OSError, ValueError):
        return True  # not a WAV we can judge: let the scorer report it
    if fmt is None:
        return False
    return fmt.data_size not in UNKNOWN_SIZES and fmt.data_offset + fmt.data_size <= size
