"""Every split rule of aad, in one place: which clips train a model, validate it, and test it.

- :func:`mimii_split`: the MIMII baseline split (raw MIMII has no train/test folders).
- :func:`borrow_test_normals`: train on a seeded share of a test-only folder's normal clips
  (protocol P1 of ``benchmarks/quality.py`` on ``dcase2020-mini``).
- :func:`study_split`: the Exploring-AAD protocol (test includes the training normals).
- :func:`validation_split`: the normal clips held out of training for ``val/loss``.
- :func:`make_groups`: one :class:`Group` per machine type (ids pooled) or per type and id.

The readers, the DataModule, ``compare`` and the benchmarks call these and nothing else.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from aad.data.manifest import ClipRecord, Manifest

PROTOCOLS = ("clean", "study")
STUDY_PROTOCOL_LABEL = "study protocol (test includes training normals)"
MIN_HELD_OUT = 4
"""Fewest normal clips worth holding out for validation; fewer: validate on the training
clips (``val/loss`` then follows the training fit, and early stopping cannot overfit-stop)."""


@dataclass
class Group:
    """The clips one model is fitted, validated and scored on: a machine type (ids pooled,
    ``machine_id=None``) or one machine type and id."""

    machine_type: str
    machine_id: str | None
    train: list[ClipRecord]
    val: list[ClipRecord]
    test: list[ClipRecord]
    notes: list[str] = field(default_factory=list)
    skipped: list[tuple[ClipRecord, str]] = field(default_factory=list)
    """Test clips left out by screening, with the reason (a status row in every score table)."""

    @property
    def label(self) -> str:
        """``fan`` or ``fan/id_00``."""
        if self.machine_id is None:
            return self.machine_type
        return f"{self.machine_type}/{self.machine_id}"

    @property
    def class_names(self) -> list[str]:
        """Sorted machine ids of the training clips (the classes an id classifier learns)."""
        return sorted({r.machine_id for r in self.train})

    @property
    def attribute_labels(self) -> list[str]:
        """Sorted :attr:`~aad.data.manifest.ClipRecord.attribute_label` of the training clips
        (the classes an attribute classifier learns; one per id when there are none)."""
        return sorted({r.attribute_label for r in self.train})


def _by_path(records: Iterable[ClipRecord]) -> list[ClipRecord]:
    return sorted(records, key=lambda r: r.path)


def mimii_split(records: Sequence[ClipRecord], seed: int = 0) -> list[ClipRecord]:
    """The MIMII baseline split, per machine type and id.

    Test = all abnormal clips plus as many normal clips (drawn with ``seed``); train = the
    remaining normal clips. Clips are drawn by file name, so one recording mixed at several
    SNRs lands in the same split at every SNR.
    """
    groups: dict[tuple[str, str], list[ClipRecord]] = defaultdict(list)
    for record in records:
        groups[(record.machine_type, record.machine_id)].append(record)
    test_normal: set[tuple[str, str, str]] = set()
    for (machine_type, machine_id), group in sorted(groups.items()):
        normal_names = sorted({Path(r.path).name for r in group if r.label == "normal"})
        abnormal_names = {Path(r.path).name for r in group if r.label == "anomaly"}
        rng = random.Random(f"{seed}:{machine_type}:{machine_id}")
        chosen = rng.sample(normal_names, min(len(abnormal_names), len(normal_names)))
        test_normal.update((machine_type, machine_id, name) for name in chosen)

    def split_of(record: ClipRecord) -> str:
        key = (record.machine_type, record.machine_id, Path(record.path).name)
        return "test" if record.label == "anomaly" or key in test_normal else "train"

    return [replace(r, split=split_of(r)) for r in records]


def borrow_test_normals(manifest: Manifest, fraction: float, seed: int = 0) -> Manifest:
    """Move a seeded ``fraction`` of each machine type's normal test clips to training.

    Per machine type (ids pooled): the normal test clips sorted by path, then
    ``random.Random(seed).sample(normals, int(len(normals) * fraction))`` moves to the train
    split, keeping at least one normal clip in test. With ``fraction=0.5`` and ``seed=0`` this
    is protocol P1 of ``benchmarks/quality.py``. For test-only folders; numbers worth quoting
    need the dataset's own training clips.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"train_from_test must be in [0, 1), got {fraction}")
    if fraction == 0.0:
        return manifest
    moved: set[str] = set()
    for machine_type in manifest.machine_types:
        normals = _by_path(
            r for r in manifest.filter(machine_type=machine_type, split="test", label="normal")
        )
        count = min(int(len(normals) * fraction), max(len(normals) - 1, 0))
        moved.update(r.path for r in random.Random(seed).sample(normals, count))
    return Manifest(replace(r, split="train") if r.path in moved else r for r in manifest)


def study_split(records: Sequence[ClipRecord], fraction: float, seed: int) -> list[ClipRecord]:
    """The Exploring-AAD training clips: a seeded ``fraction`` of ALL normal clips (its test
    set is every clip, training normals included, so its scores are optimistic)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"train_fraction must be in (0, 1], got {fraction}")
    normal = _by_path(r for r in records if r.label == "normal")
    rng = random.Random(f"study:{seed}")
    n_train = max(1, int(round(fraction * len(normal)))) if normal else 0
    return _by_path(rng.sample(normal, n_train))


def validation_split(
    train: Sequence[ClipRecord], fraction: float, seed: int
) -> tuple[list[ClipRecord], list[ClipRecord], str | None]:
    """``(fit, val, note)``: a seeded ``fraction`` of the normal training clips held out.

    Fewer than :data:`MIN_HELD_OUT` clips to hold out (or ``fraction == 0``): nothing is
    held out and validation runs on the training clips themselves; ``note`` says so.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {fraction}")
    train = _by_path(train)
    n_val = round(fraction * len(train))
    if fraction == 0.0:
        return train, train, None
    if n_val < MIN_HELD_OUT or len(train) - n_val < 1:
        note = (
            f"{len(train)} training clips: too few to hold {MIN_HELD_OUT} out for validation; "
            "validating on the training clips"
        )
        return train, train, note
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    held_out = set(order[:n_val])
    fit = [r for i, r in enumerate(train) if i not in held_out]
    val = [r for i, r in enumerate(train) if i in held_out]
    return fit, val, None


def make_groups(
    manifest: Manifest,
    *,
    per_id: bool = False,
    protocol: str = "clean",
    train_fraction: float = 0.8,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[Group]:
    """One group per machine type (ids pooled) or per (type, id) with ``per_id``.

    ``protocol="clean"``: train = the normal clips of the train split, test = the labelled
    clips of the test split. ``"study"``: :func:`study_split`, test = every labelled clip.
    Unlabelled clips (evaluation sets) are tested too, so their scores are written.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    groups: list[Group] = []
    for machine_type in manifest.machine_types:
        of_type = manifest.filter(machine_type=machine_type)
        for machine_id in of_type.unique("machine_id") if per_id else [None]:
            clips = of_type.filter(machine_id=machine_id).records
            notes: list[str] = []
            if protocol == "study":
                labelled = _by_path(r for r in clips if r.label != "unknown")
                train = study_split(labelled, train_fraction, seed)
                test = labelled
                notes.append(STUDY_PROTOCOL_LABEL)
            else:
                train = [r for r in clips if r.split == "train" and r.label == "normal"]
                test = _by_path(r for r in clips if r.split == "test")
            fit, val, note = validation_split(train, val_fraction, seed)
            if note:
                notes.append(note)
            groups.append(Group(machine_type, machine_id, fit, val, test, notes))
    return groups
