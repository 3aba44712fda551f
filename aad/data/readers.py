"""Build a :class:`Manifest` from a dataset folder: raw MIMII, DCASE 2020, DCASE 2021-2025.

Each reader matches the tail of every ``*.wav`` path under the root (found by
:func:`aad.data.files.walk_wav_files`, symlinked folders followed) against its layout's
naming scheme, so the root may be the dataset folder or any folder above the type folders.
``read_manifest(root, layout="auto")`` picks the layout whose scheme matches the most files.
"""

from __future__ import annotations

import csv
import re
import warnings
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from aad.data.files import WalkResult, walk_wav_files
from aad.data.manifest import ClipRecord, Manifest
from aad.data.splits import mimii_split

LAYOUTS = ("mimii", "dcase2020", "dcase2021")
LAYOUT_ALIASES = {"toyadmos2": "dcase2021", "dcase2022": "dcase2021", "dcase2023": "dcase2021"}
LAYOUT_EXAMPLES = {
    "mimii": "0_dB_fan/fan/id_00/normal/00000000.wav",
    "dcase2020": "dev_data/fan/train/normal_id_00_00000000.wav",
    "dcase2021": "fan/train/section_00_source_train_normal_0000_m-n_W.wav",
}
TOYADMOS2_TYPES = ("ToyCar", "ToyTrain")

_SNR_DIR = re.compile(r"^(-?\d+)_?dB_(.+)$")
_MIMII_ID = re.compile(r"^id_\d+$")
_MIMII_NAME = re.compile(r"^\d+\.wav$", re.IGNORECASE)
_D2020_LABELLED = re.compile(r"^(normal|anomaly)_(id_\d+)_\d+\.wav$", re.IGNORECASE)
_D2020_EVAL = re.compile(r"^(id_\d+)_\d+\.wav$", re.IGNORECASE)
_D2021_LABELLED = re.compile(
    r"^section_(\d+)_(source|target)_(train|test)_(normal|anomaly)_(\d+)(?:_(.*))?\.wav$",
    re.IGNORECASE,
)
_D2021_EVAL = re.compile(r"^section_(\d+)_(\d+)\.wav$", re.IGNORECASE)


class DatasetNotFoundError(ValueError):
    """The dataset root does not exist or holds no files."""


class LayoutNotRecognisedError(ValueError):
    """No known layout matches the files under the root."""


def _check_root(root: str | Path) -> tuple[Path, WalkResult]:
    """The absolute root and what :func:`walk_wav_files` finds under it."""
    path = Path(root).expanduser().absolute()
    if not path.is_dir():
        raise DatasetNotFoundError(f"dataset root {path} does not exist (or is not a folder)")
    walk = walk_wav_files(path)
    if not (walk.files or walk.skipped or walk.other_files):
        raise DatasetNotFoundError(f"dataset root {path} is empty")
    return path, walk


def _listing(lines: list[str], limit: int = 20) -> str:
    more = f"\n  ... and {len(lines) - limit} more" if len(lines) > limit else ""
    return "\n  " + "\n  ".join(lines[:limit]) + more


def _skipped_message(path: Path, walk: WalkResult) -> str:
    lines = [f"{p}: {reason}" for p, reason in walk.skipped]
    return f"{len(lines)} path(s) under {path} are not readable clips:{_listing(lines)}"


# --------------------------------------------------------------------------- MIMII
def _snr_token(value: str | int | float) -> str:
    """Normalise an SNR given as ``0``, ``"-6"``, ``"6_dB"`` or ``"6dB"`` to ``"6_dB"``."""
    match = re.match(r"^\s*(-?\d+)", str(value))
    if match is None:
        raise ValueError(f"snr must look like -6, 0, 6 or '6_dB', got {value!r}")
    return f"{int(match.group(1))}_dB"


def _parse_mimii(path: Path) -> ClipRecord | None:
    parts = path.parts
    if len(parts) < 4 or not _MIMII_NAME.match(parts[-1]):
        return None
    label_dir, machine_id, machine_type = parts[-2], parts[-3], parts[-4]
    if label_dir not in ("normal", "abnormal") or not _MIMII_ID.match(machine_id):
        return None
    attributes = {}
    snr_match = _SNR_DIR.match(parts[-5]) if len(parts) >= 5 else None
    if snr_match and snr_match.group(2) == machine_type:
        attributes["snr"] = f"{int(snr_match.group(1))}_dB"
    label = "normal" if label_dir == "normal" else "anomaly"
    return ClipRecord(str(path), "mimii", machine_type, machine_id, "test", label, "", attributes)


def read_mimii(
    files: list[Path], *, seed: int = 0, snr: str | int | float | None = None
) -> tuple[list[ClipRecord], list[Path]]:
    """Raw MIMII records (split applied) and the files that did not match."""
    records, unmatched = _parse_all(files, _parse_mimii)
    if snr is not None:
        wanted = _snr_token(snr)
        available = sorted({r.attributes.get("snr", "?") for r in records})
        records = [r for r in records if r.attributes.get("snr") == wanted]
        if not records:
            raise ValueError(f"no MIMII clips at snr {wanted}; available: {available}")
    return mimii_split(records, seed), unmatched


# --------------------------------------------------------------------------- DCASE 2020
def _parse_dcase2020(path: Path) -> ClipRecord | None:
    parts = path.parts
    if len(parts) < 3 or parts[-2] not in ("train", "test"):
        return None
    split, machine_type, name = parts[-2], parts[-3], parts[-1]
    labelled = _D2020_LABELLED.match(name)
    if labelled:
        label, machine_id = labelled.group(1).lower(), labelled.group(2).lower()
        return ClipRecord(str(path), "dcase2020", machine_type, machine_id, split, label)
    unlabelled = _D2020_EVAL.match(name)
    if unlabelled:
        machine_id = unlabelled.group(1).lower()
        return ClipRecord(str(path), "dcase2020", machine_type, machine_id, split, "unknown")
    return None


# --------------------------------------------------------------------------- DCASE 2021+
def parse_name_attributes(text: str | None) -> dict[str, str]:
    """``"m-n_W_a-b_X"`` -> ``{"m-n": "W", "a-b": "X"}``; ``"noAttribute"`` -> ``{}``.

    A trailing key without a value maps to ``""``.
    """
    if not text or text == "noAttribute":
        return {}
    tokens = text.split("_")
    pairs = {tokens[i]: tokens[i + 1] for i in range(0, len(tokens) - 1, 2)}
    if len(tokens) % 2:
        pairs[tokens[-1]] = ""
    return pairs


def read_attribute_csvs(folder: Path) -> dict[str, dict[str, str]]:
    """Attributes from every ``attributes_*.csv`` in ``folder``, keyed by file base name.

    Columns ``dNp``/``dNv`` become ``{dNp value: dNv value}``; other columns (except
    ``file_name``) are kept as they are; empty and ``noAttribute`` values are dropped.
    """
    table: dict[str, dict[str, str]] = {}
    for csv_path in sorted(folder.glob("attributes_*.csv")):
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:  # tolerate a BOM
            for row in csv.DictReader(handle):
                name = Path(row.get("file_name") or "").name
                if name:
                    table.setdefault(name, {}).update(_row_attributes(row))
    return table


def _row_attributes(row: dict[str, str]) -> dict[str, str]:
    attributes: dict[str, str] = {}
    for column, value in row.items():
        if column is None or column == "file_name":
            continue
        param = re.fullmatch(r"d(\d+)p", column)
        if param:
            key, val = (value or "").strip(), (row.get(f"d{param.group(1)}v") or "").strip()
            if key and key != "noAttribute":
                attributes[key] = val
        elif not re.fullmatch(r"d\d+v", column) and value not in (None, "", "noAttribute"):
            attributes[column] = value
    return attributes


def _parse_dcase2021(path: Path, dataset: str | None = None) -> ClipRecord | None:
    parts = path.parts
    if len(parts) < 3 or parts[-2] not in ("train", "test"):
        return None
    folder_split, machine_type, name = parts[-2], parts[-3], parts[-1]
    if dataset is None:
        dataset = "toyadmos2" if machine_type in TOYADMOS2_TYPES else "dcase2021"
    labelled = _D2021_LABELLED.match(name)
    if labelled:
        section, domain, split, label, _, attrs = labelled.groups()
        return ClipRecord(
            str(path),
            dataset,
            machine_type,
            f"section_{section}",
            split.lower(),
            label.lower(),
            domain.lower(),
            parse_name_attributes(attrs),
        )
    unlabelled = _D2021_EVAL.match(name)
    if unlabelled:
        section = unlabelled.group(1)
        return ClipRecord(
            str(path), dataset, machine_type, f"section_{section}", folder_split, "unknown"
        )
    return None


def _with_csv_attributes(records: list[ClipRecord]) -> list[ClipRecord]:
    """Merge ``attributes_*.csv`` found in the type folder or beside the clips."""
    cache: dict[Path, dict[str, dict[str, str]]] = {}
    merged = []
    for record in records:
        path = Path(record.path)
        extra: dict[str, str] = {}
        for folder in (path.parent.parent, path.parent):
            if folder not in cache:
                cache[folder] = read_attribute_csvs(folder)
            extra.update(cache[folder].get(path.name, {}))
        if extra:
            record = replace(record, attributes={**record.attributes, **extra})
        merged.append(record)
    return merged


# --------------------------------------------------------------------------- dispatch
Parser = Callable[[Path], "ClipRecord | None"]
PARSERS: dict[str, Parser] = {
    "mimii": _parse_mimii,
    "dcase2020": _parse_dcase2020,
    "dcase2021": _parse_dcase2021,
}


def _parse_all(files: list[Path], parser: Parser) -> tuple[list[ClipRecord], list[Path]]:
    records, unmatched = [], []
    for path in files:
        record = parser(path)
        if record is None:
            unmatched.append(path)
        else:
            records.append(record)
    return records, unmatched


def _canonical(layout: str) -> str:
    name = LAYOUT_ALIASES.get(layout, layout)
    if name not in (*LAYOUTS, "auto"):
        valid = ", ".join([*LAYOUTS, *LAYOUT_ALIASES, "auto"])
        raise ValueError(f"unknown layout {layout!r}; expected one of: {valid}")
    return name


def _not_recognised(root: Path, tried: list[str], walk: WalkResult) -> LayoutNotRecognisedError:
    lines = "\n".join(f"  {name}: e.g. {LAYOUT_EXAMPLES[name]}" for name in tried)
    files = walk.files
    sample = f" (first file: {files[0].relative_to(root)})" if files else " (no .wav files)"
    skipped = f"\n{_skipped_message(root, walk)}" if walk.skipped else ""
    return LayoutNotRecognisedError(
        f"no known layout matches the files under {root}{sample}; tried:\n{lines}{skipped}"
    )


def detect_layout(root: str | Path) -> str:
    """The layout whose naming scheme matches the most ``*.wav`` files under ``root``."""
    path, walk = _check_root(root)
    return _detect(path, walk)


def _detect(root: Path, walk: WalkResult) -> str:
    counts = {name: sum(PARSERS[name](f) is not None for f in walk.files) for name in LAYOUTS}
    best = max(LAYOUTS, key=lambda name: counts[name])
    if counts[best] == 0:
        raise _not_recognised(root, list(LAYOUTS), walk)
    return best


def read_manifest(
    root: str | Path,
    layout: str = "auto",
    *,
    seed: int = 0,
    snr: str | int | float | None = None,
    strict: bool = False,
) -> Manifest:
    """Read every clip under ``root`` into a :class:`Manifest`.

    ``layout``: ``"auto"``, ``"mimii"``, ``"dcase2020"``, ``"dcase2021"`` or ``"toyadmos2"``
    (the DCASE 2021 reader, dataset named ``toyadmos2``). ``seed`` drives the MIMII split;
    ``snr`` keeps one MIMII SNR folder (ignored by the other layouts). WAV files that do
    not fit the layout, and paths that cannot be read as clips (dangling symlinks, symlink
    loops, a folder named ``x.wav``: see :func:`aad.data.files.walk_wav_files`, which follows
    symlinked folders), are skipped with one warning naming each, or raise when ``strict``.
    """
    path, walk = _check_root(root)
    name = _canonical(layout)
    files = walk.files
    if name == "auto":
        name = _detect(path, walk)
    if name == "mimii":
        records, unmatched = read_mimii(files, seed=seed, snr=snr)
    elif name == "dcase2021":
        dataset = "toyadmos2" if layout == "toyadmos2" else None
        records, unmatched = _parse_all(files, lambda f: _parse_dcase2021(f, dataset))
        records = _with_csv_attributes(records)
    else:
        records, unmatched = _parse_all(files, PARSERS[name])
    if not records:
        raise _not_recognised(path, [name], walk)
    sections = []
    if unmatched:
        sections.append(
            f"{len(unmatched)} .wav file(s) under {path} do not match layout {name!r}:"
            + _listing([str(p) for p in unmatched])
        )
    if walk.skipped:
        sections.append(_skipped_message(path, walk))
    if sections:
        message = "\n".join(sections)
        if strict:
            raise LayoutNotRecognisedError(message)
        warnings.warn(f"skipping {message}", stacklevel=2)
    return Manifest(records)


def list_machine_types(root: str | Path, layout: str = "auto") -> list[str]:
    """Sorted machine types present under ``root``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read_manifest(root, layout).machine_types
