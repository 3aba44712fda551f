"""Synthetic machine sounds: the built-in default dataset (no download needed).

Four machine types with distinct physics (:mod:`.machines`, built from :mod:`.signals`),
several ids each (every id has its own base frequency, resonances and timing), background
noise at a chosen SNR (:mod:`.clips`), normal clips that vary (speed, level, harmonic
balance, noise), and anomalies modelled on real faults, written in three layouts
(:mod:`.plan`, :mod:`.dataset`). Everything is drawn from ``numpy.random.default_rng``
seeded per clip, so the same seed writes byte-identical files. ``difficulty="hard"``: SNR
-6 dB, faults 10-20 dB under the machine, subtler structural faults, wider normal spread.

    python -m aad.data.synthetic --root data/synthetic --layout dcase2020 --size small
    python -m aad.data.synthetic --root data/synthetic_hard --difficulty hard
"""

from __future__ import annotations

import argparse
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path

from aad.data.synthetic.clips import (
    DIFFICULTIES,
    MACHINE_RMS,
    Difficulty,
    difficulty_profile,
    synthesise_clip,
)
from aad.data.synthetic.dataset import MIMII_CHANNELS, generate_dataset
from aad.data.synthetic.machines import ANOMALY_KINDS, MACHINE_TYPES, machine_params
from aad.data.synthetic.plan import SIZES, SYNTHETIC_LAYOUTS, TARGET_SPEED, PlannedClip

__all__ = [
    "ANOMALY_KINDS",
    "DIFFICULTIES",
    "MACHINE_RMS",
    "MACHINE_TYPES",
    "MIMII_CHANNELS",
    "SIZES",
    "SYNTHETIC_LAYOUTS",
    "SYNTHETIC_ROOT_PREFIX",
    "TARGET_SPEED",
    "Difficulty",
    "PlannedClip",
    "difficulty_profile",
    "generate_dataset",
    "generate_if_missing",
    "machine_params",
    "main",
    "synthesise_clip",
    "write_atomically",
]

SYNTHETIC_ROOT_PREFIX = "synthetic"


def _occupied(root: Path) -> bool:
    """True when ``root`` exists and is not an empty folder."""
    return root.exists() and not (root.is_dir() and not any(root.iterdir()))


def write_atomically(root: str | Path, *, overwrite: bool = False, **kwargs: object) -> Path:
    """:func:`generate_dataset` into the sibling ``<root>.partial``, renamed to ``root`` only
    once complete, so an interrupted run never leaves a half-written set behind (its partial
    folder is removed; one left by a killed process is cleared by the next run).

    An existing, non-empty ``root`` raises :class:`FileExistsError` unless ``overwrite``,
    which swaps the old tree out only after the new one is complete.
    """
    root = Path(root)
    if root.name in ("", ".", ".."):
        root = root.resolve()
    if _occupied(root) and not overwrite:
        raise FileExistsError(f"{root} already exists; remove it first or overwrite it")
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        generate_dataset(partial, **kwargs)  # the package attribute: tests may replace it
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if root.exists() or root.is_symlink():
        old = root.with_name(root.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        root.rename(old)
        partial.rename(root)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old)
        else:
            old.unlink()
    else:
        partial.rename(root)
    return root


def generate_if_missing(root: str | Path, **kwargs: object) -> bool:
    """Write a synthetic dataset at ``root`` if it is missing and its folder name starts
    with ``synthetic`` (``data/synthetic``, ``data/synthetic_mimii``); return whether it did.

    Any other missing root is left alone, so a mistyped path to real data fails with
    ``DatasetNotFoundError`` instead of silently training on synthetic sounds. Written by
    :func:`write_atomically`: the root appears only once the set is complete.
    """
    root = Path(root)
    if root.exists() or not root.name.startswith(SYNTHETIC_ROOT_PREFIX):
        return False
    logging.getLogger(__name__).warning(
        "dataset root %s does not exist: writing a synthetic dataset (%s) there",
        root,
        ", ".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults",
    )
    write_atomically(root, **kwargs)
    return True


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m aad.data.synthetic --root data/synthetic``: write atomically, summarise."""
    parser = argparse.ArgumentParser(
        prog="python -m aad.data.synthetic", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--root", default="data/synthetic")
    parser.add_argument("--layout", default="dcase2020", choices=SYNTHETIC_LAYOUTS)
    parser.add_argument("--size", default="small", choices=tuple(SIZES))
    parser.add_argument("--difficulty", default="easy", choices=tuple(DIFFICULTIES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--duration", type=float, default=10.0, help="clip length in seconds")
    parser.add_argument("--snr-db", type=float, default=None, help="default: 6 (easy) or -6 (hard)")
    parser.add_argument("--machine-types", nargs="+", default=list(MACHINE_TYPES))
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing root once the new set is complete",
    )
    args = parser.parse_args(argv)
    root = Path(args.root)
    if _occupied(root) and not args.overwrite:
        parser.error(f"{root} already exists; remove it or pass --overwrite to replace it")
    from aad.data.readers import read_manifest

    write_atomically(
        root,
        overwrite=args.overwrite,
        layout=args.layout,
        machine_types=args.machine_types,
        duration_s=args.duration,
        snr_db=args.snr_db,
        seed=args.seed,
        size=args.size,
        difficulty=args.difficulty,
    )
    print(read_manifest(root, args.layout, seed=args.seed).summary())
