"""One manifest row per clip, whatever layout the clips came from.

Every reader (raw MIMII, DCASE 2020, DCASE 2021+, ToyADMOS2, synthetic) returns a
:class:`Manifest`; everything downstream (datasets, scoring, reports) reads only this.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

LABELS = ("normal", "anomaly", "unknown")
SPLITS = ("train", "test")
DOMAINS = ("source", "target", "")
MANIFEST_COLUMNS = (
    "path",
    "dataset",
    "machine_type",
    "machine_id",
    "domain",
    "split",
    "label",
    "attributes",
)
NOT_LABELS = ("snr",)
"""Attributes that are a recording condition (MIMII's mix level), not the machine's setting:
left out of :attr:`ClipRecord.attribute_label`."""
LABEL_SEPARATOR = "|"


def label_machine_id(attribute_label: str) -> str:
    """The machine id of a :attr:`ClipRecord.attribute_label` (``"section_00|spd_100"`` ->
    ``"section_00"``)."""
    return attribute_label.split(LABEL_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class ClipRecord:
    """One audio clip and what its layout says about it.

    ``machine_id`` is ``id_XX`` (MIMII, DCASE 2020) or ``section_XX`` (DCASE 2021+);
    ``domain`` is ``source``/``target`` where the layout says so, else ``""``;
    ``label`` is ``normal``, ``anomaly`` or ``unknown`` (unlabelled evaluation data).
    """

    path: str
    dataset: str
    machine_type: str
    machine_id: str
    split: str
    label: str
    domain: str = ""
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in LABELS:
            raise ValueError(f"label must be one of {LABELS}, got {self.label!r} ({self.path})")
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r} ({self.path})")
        if self.domain not in DOMAINS:
            raise ValueError(f"domain must be one of {DOMAINS}, got {self.domain!r}")

    @property
    def attribute_label(self) -> str:
        """The machine id with its attributes, ``"section_00|spd_100"`` (sorted by name;
        ``"id_00"`` without any): the class an attribute classifier learns."""
        parts = [f"{k}_{v}" if v else k for k, v in sorted(self.attributes.items())
                 if k not in NOT_LABELS]  # fmt: skip
        return LABEL_SEPARATOR.join([self.machine_id, *parts])

    @property
    def target(self) -> int:
        """1 for anomaly, 0 for normal, -1 for unknown (the integer label batches carry)."""
        return {"normal": 0, "anomaly": 1, "unknown": -1}[self.label]

    def __hash__(self) -> int:  # attributes is a dict; the path identifies a clip
        return hash(self.path)


class Manifest:
    """An ordered, filterable list of :class:`ClipRecord`.

    >>> m = Manifest([ClipRecord("a.wav", "dcase2020", "fan", "id_00", "train", "normal")])
    >>> len(m.filter(machine_type="fan", split="train"))
    1
    """

    def __init__(self, records: Iterable[ClipRecord]) -> None:
        self.records: list[ClipRecord] = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ClipRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ClipRecord:
        return self.records[index]

    def __add__(self, other: Manifest) -> Manifest:
        return Manifest([*self.records, *other.records])

    def filter(self, **criteria: str | Iterable[str] | None) -> Manifest:
        """Rows whose fields equal the given values (a list/tuple/set means any of them).

        A criterion of ``None`` is ignored, so optional config values pass straight through.
        """

        def matches(record: ClipRecord) -> bool:
            for name, wanted in criteria.items():
                if wanted is None:
                    continue
                value = getattr(record, name)
                if isinstance(wanted, str):
                    if value != wanted:
                        return False
                elif value not in wanted:
                    return False
            return True

        return Manifest(r for r in self.records if matches(r))

    def unique(self, column: str) -> list[str]:
        """Sorted distinct values of one column."""
        return sorted({getattr(r, column) for r in self.records})

    @property
    def machine_types(self) -> list[str]:
        return self.unique("machine_type")

    def with_split(self, split: str) -> Manifest:
        return Manifest(replace(r, split=split) for r in self.records)

    def counts(self) -> Counter[tuple[str, str, str, str]]:
        """Clip counts keyed by (machine_type, machine_id, split, label)."""
        return Counter((r.machine_type, r.machine_id, r.split, r.label) for r in self.records)

    def summary(self) -> str:
        """A plain-text table: one line per machine type and id with train/test counts."""
        counts = self.counts()
        keys = sorted({(t, i) for t, i, _, _ in counts})
        header = (
            f"{'machine_type':<14}{'machine_id':<13}{'train_normal':>13}"
            f"{'test_normal':>12}{'test_anomaly':>13}{'unlabelled':>11}"
        )
        lines = [header, "-" * len(header)]
        for machine_type, machine_id in keys:
            row = [
                counts[(machine_type, machine_id, "train", "normal")],
                counts[(machine_type, machine_id, "test", "normal")],
                counts[(machine_type, machine_id, "test", "anomaly")],
                counts[(machine_type, machine_id, "test", "unknown")]
                + counts[(machine_type, machine_id, "train", "unknown")],
            ]
            lines.append(
                f"{machine_type:<14}{machine_id:<13}{row[0]:>13}{row[1]:>12}{row[2]:>13}{row[3]:>11}"
            )
        datasets = ", ".join(self.unique("dataset")) or "-"
        lines.append(f"{len(self)} clips ({datasets})")
        return "\n".join(lines)

    def to_csv(self, path: str | Path) -> Path:
        """Write the manifest as CSV; the attributes column holds a JSON object."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=MANIFEST_COLUMNS)
            writer.writeheader()
            for record in self.records:
                row = asdict(record)
                row["attributes"] = json.dumps(record.attributes, ensure_ascii=False)
                writer.writerow(row)
        return path

    @classmethod
    def from_csv(cls, path: str | Path) -> Manifest:
        with Path(path).open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return cls(
            ClipRecord(**{**row, "attributes": json.loads(row["attributes"] or "{}")})
            for row in rows
        )
