"""Which files a synthetic dataset holds: one :class:`PlannedClip` per file, per layout."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from aad.data.synthetic.machines import ANOMALY_KINDS, crc, id_number

SIZES: dict[str, dict[str, int]] = {
    "small": {"n_train": 40, "n_test_normal": 10, "n_test_anomaly": 10},
    "large": {"n_train_per_type": 1000, "n_test_normal": 50, "n_test_anomaly": 50},
}
SYNTHETIC_LAYOUTS = ("dcase2020", "mimii", "dcase2021")
TARGET_SPEED = 1.1  # the synthetic "target domain": the machine runs 10 % faster


@dataclass(frozen=True)
class PlannedClip:
    """One file to write: where, what, and the seed of its random draws."""

    relpath: str
    machine_type: str
    machine_id: str
    split: str
    label: str
    anomaly: str | None
    index: int
    domain: str = ""
    speed: float = 1.0


def resolve_counts(
    size: str,
    machine_ids: Sequence[str],
    n_train: int | None,
    n_test_normal: int | None,
    n_test_anomaly: int | None,
) -> tuple[int, int, int]:
    if size not in SIZES:
        raise ValueError(f"size must be one of {tuple(SIZES)}, got {size!r}")
    preset = SIZES[size]
    default_train = preset.get("n_train") or -(-preset["n_train_per_type"] // len(machine_ids))
    return (
        default_train if n_train is None else n_train,
        preset["n_test_normal"] if n_test_normal is None else n_test_normal,
        preset["n_test_anomaly"] if n_test_anomaly is None else n_test_anomaly,
    )


def _plan_dcase2020(
    machine_type: str, machine_id: str, counts: tuple[int, int, int]
) -> Iterator[PlannedClip]:
    n_train, n_normal, n_anomaly = counts
    kinds = ANOMALY_KINDS[machine_type]
    for i in range(n_train):
        name = f"{machine_type}/train/normal_{machine_id}_{i:08d}.wav"
        yield PlannedClip(name, machine_type, machine_id, "train", "normal", None, i)
    for i in range(n_normal):
        name = f"{machine_type}/test/normal_{machine_id}_{i:08d}.wav"
        yield PlannedClip(name, machine_type, machine_id, "test", "normal", None, i)
    for i in range(n_anomaly):
        name = f"{machine_type}/test/anomaly_{machine_id}_{i:08d}.wav"
        yield PlannedClip(
            name, machine_type, machine_id, "test", "anomaly", kinds[i % len(kinds)], i
        )


def _plan_mimii(
    machine_type: str, machine_id: str, counts: tuple[int, int, int], snr_db: float
) -> Iterator[PlannedClip]:
    n_train, n_normal, n_anomaly = counts
    kinds = ANOMALY_KINDS[machine_type]
    top = f"{int(round(snr_db))}_dB_{machine_type}/{machine_type}/{machine_id}"
    for i in range(n_train + n_normal):  # the reader makes the train/test split
        split = ""  # read_manifest draws the MIMII train/test split
        yield PlannedClip(
            f"{top}/normal/{i:08d}.wav", machine_type, machine_id, split, "normal", None, i
        )
    for i in range(n_anomaly):
        name = f"{top}/abnormal/{i:08d}.wav"
        yield PlannedClip(
            name, machine_type, machine_id, "test", "anomaly", kinds[i % len(kinds)], i
        )


def _plan_dcase2021(
    machine_type: str, machine_id: str, counts: tuple[int, int, int]
) -> Iterator[PlannedClip]:
    """DCASE 2022+-style: source/target domains, speed attribute in the name and the CSV."""
    n_train, n_normal, n_anomaly = counts
    kinds = ANOMALY_KINDS[machine_type]
    section = f"section_{id_number(machine_id):02d}"
    n_target_train = max(1, n_train // 10) if n_train > 1 else 0
    plan = [("train", "normal", i, i >= n_train - n_target_train) for i in range(n_train)]
    plan += [("test", "normal", i, i % 2 == 1) for i in range(n_normal)]
    plan += [("test", "anomaly", i, i % 2 == 1) for i in range(n_anomaly)]
    counters: dict[tuple[str, str, str], int] = {}
    for split, label, i, target in plan:
        domain = "target" if target else "source"
        number = counters.setdefault((domain, split, label), 0)
        counters[(domain, split, label)] = number + 1
        speed = TARGET_SPEED if target else 1.0
        attrs = f"spd_{int(round(speed * 100))}"
        name = f"{section}_{domain}_{split}_{label}_{number:04d}_{attrs}.wav"
        kind = kinds[i % len(kinds)] if label == "anomaly" else None
        yield PlannedClip(
            f"{machine_type}/{split}/{name}",
            machine_type,
            machine_id,
            split,
            label,
            kind,
            i,
            domain,
            speed,
        )


def plan_clips(
    layout: str,
    machine_types: Sequence[str],
    machine_ids: Sequence[str],
    counts: tuple[int, int, int],
    snr_db: float,
) -> list[PlannedClip]:
    """Every file of a dataset, type by type and id by id."""
    planned: list[PlannedClip] = []
    for machine_type in machine_types:
        for machine_id in machine_ids:
            if layout == "mimii":
                planned += _plan_mimii(machine_type, machine_id, counts, snr_db)
            elif layout == "dcase2021":
                planned += _plan_dcase2021(machine_type, machine_id, counts)
            else:
                planned += _plan_dcase2020(machine_type, machine_id, counts)
    return planned


def clip_seed(seed: int, clip: PlannedClip) -> list[int]:
    """Seed of one clip: depends on what the clip is, not on how many others there are."""
    what = f"{clip.machine_type}|{clip.machine_id}|{clip.split}|{clip.label}|{clip.domain}"
    return [seed, crc(what), clip.index]
