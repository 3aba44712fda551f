"""Find the WAV clips under a folder, following symlinks safely, and say what was left out.

``walk_wav_files(root)`` follows symlinked folders (a machine-type folder linked in from
another disk is read like any other), walks each real folder once (a link back to a folder
above is a loop, named, not followed) and names every path it cannot use: dangling links,
link loops, a folder named ``x.wav``, special files. Hidden files and folders (``.name``)
are ignored. ``collect_wav_files(inputs)`` does the same for files and folders given on a
command line.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

WAV_SUFFIX = ".wav"


@dataclass
class WalkResult:
    """Clips found and paths skipped, each with the reason."""

    files: list[Path] = field(default_factory=list)
    """Regular files with a ``.wav`` suffix (any case), sorted; hidden ones ignored."""
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    """``(path, reason)``: "dangling symlink", "symlink loop", "not a regular file (...)"."""
    other_files: int = 0
    """How many other regular files (CSV, text...) were seen: a root with none is empty."""

    def describe(self) -> str:
        """The skipped paths, one ``path: reason`` per line."""
        return "\n".join(f"{path}: {reason}" for path, reason in self.skipped)


def _is_wav(name: str) -> bool:
    return name.lower().endswith(WAV_SUFFIX) and len(name) > len(WAV_SUFFIX)


def _broken_link_reason(path: str) -> str:
    """Why a symlink does not resolve: a loop or a missing target."""
    try:
        os.stat(path)
    except OSError as err:
        if err.errno == errno.ELOOP:
            return "symlink loop"
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return f"dangling symlink (-> {os.readlink(path)})"
        return f"unreadable ({err.strerror})"
    return "symlink"  # resolved after all (it changed while walking)


def _file_entry(path: str, name: str, result: WalkResult) -> None:
    """Sort one non-folder entry into files, skipped or other_files."""
    if os.path.islink(path) and not os.path.exists(path):
        result.skipped.append((Path(path), _broken_link_reason(path)))
    elif os.path.isfile(path):
        if _is_wav(name):
            result.files.append(Path(path))
        else:
            result.other_files += 1
    elif _is_wav(name):
        result.skipped.append((Path(path), "not a regular file (device, pipe or socket)"))


def _walk_into(root: Path, result: WalkResult, seen: dict[str, Path]) -> None:
    """Add the clips under ``root`` (already a folder) to ``result``."""
    seen.setdefault(os.path.realpath(root), root)

    def on_error(err: OSError) -> None:
        result.skipped.append((Path(err.filename or root), f"cannot list folder ({err.strerror})"))

    for folder, dirnames, filenames in os.walk(root, followlinks=True, onerror=on_error):
        here = os.path.realpath(folder)
        keep = []
        for name in sorted(dirnames):
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            if _is_wav(name):
                result.skipped.append((Path(path), "not a regular file (directory named .wav)"))
            real = os.path.realpath(path)
            if here == real or here.startswith(real.rstrip(os.sep) + os.sep):
                result.skipped.append((Path(path), f"symlink loop (-> {real}, a folder above)"))
            elif real in seen:
                result.skipped.append((Path(path), f"same folder as {seen[real]} (read once)"))
            else:
                seen[real] = Path(path)
                keep.append(name)
        dirnames[:] = keep  # os.walk descends only into these
        for name in filenames:
            if not name.startswith("."):
                _file_entry(os.path.join(folder, name), name, result)


def walk_wav_files(root: str | Path) -> WalkResult:
    """Every ``.wav`` clip under ``root`` (symlinks followed, each real folder once).

    >>> walk_wav_files("data/synthetic").files[:1]  # doctest: +SKIP
    [PosixPath('data/synthetic/fan/test/anomaly_id_00_00000000.wav')]
    """
    result = WalkResult()
    _walk_into(Path(root), result, {})
    result.files.sort()
    result.skipped.sort()
    return result


def collect_wav_files(inputs: Sequence[str | Path]) -> WalkResult:
    """Clips named on a command line: each file as given, each folder walked.

    Files come in the order given, each folder's clips sorted, duplicates dropped. A file
    given by name is taken whatever its suffix (the decoder judges it); a path that is a
    folder is walked, never taken as a clip. A missing input (or a dangling link) raises
    :class:`FileNotFoundError` naming it.
    """
    result = WalkResult()
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.exists():
            what = "dangling symlink" if path.is_symlink() else "no such file or folder"
            raise FileNotFoundError(f"{what}: {path}")
        if path.is_dir():
            walked = walk_wav_files(path)
            files += walked.files
            result.skipped += [s for s in walked.skipped if s not in result.skipped]
            result.other_files += walked.other_files
        elif path.is_file():
            files.append(path)
        else:
            result.skipped.append((path, "not a regular file (device, pipe or socket)"))
    unique: dict[str, Path] = {}
    for path in files:  # a clip reached twice (a folder and its parent, a link) counts once
        unique.setdefault(os.path.realpath(path), path)
    result.files = list(unique.values())
    return result
