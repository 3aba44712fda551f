"""``MachineSoundDataModule``: screened groups of clips as waveform batches for Lightning.

Batches are dicts: ``waveform`` float32 (B, S), ``target`` int64 (B,) (1 anomaly, 0 normal,
-1 unknown), ``index`` int64 (B,) into ``datamodule.records(stage)``, ``class_index`` int64 (B,)
(the clip's machine id among the group's training ids, -1 when not among them),
``label_index`` int64 (B,) (its id and attributes among the group's training
``attribute_labels``, -1 when not among them) and ``domain`` int64 (B,) (0 source, 1
target, -1 none). Only PCM travels through the DataLoader; features
are computed on the device.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from aad.data.audio import AudioDecodeError, check_channel, screen_clips
from aad.data.dataset import ClipDataset, clip_length
from aad.data.manifest import ClipRecord, Manifest
from aad.data.readers import list_machine_types, read_manifest
from aad.data.splits import PROTOCOLS, Group, borrow_test_normals, make_groups

__all__ = ["ClipDataset", "MachineSoundDataModule", "list_machine_types"]

STAGE_ALIASES = {"train": "fit", "val": "validate", "validation": "validate"}
MIN_CLIP_FRACTION = 0.5
"""Clips shorter than this share of the clip length are refused (training, test, predict):
zero-padding them would score mostly silence."""
ALL = ("all", "", None)


class MachineSoundDataModule(L.LightningDataModule):
    """Machine-sound clips of any supported layout, grouped and split by :mod:`aad.data.splits`.

    :meth:`groups` reads the manifest under ``root``, keeps ``machine_type``/``machine_id``
    (a name, a list, or null/``all`` for every one), applies the split rules (``protocol``,
    ``train_from_test``, ``val_fraction``) and screens every clip once: unreadable, NaN/Inf,
    too short (under half the clip length) and, for training, silent clips are left out and
    listed in one warning (``strict``: refused). One group per machine type (ids pooled), or
    per type and id with ``per_id``. :meth:`for_group` gives the DataModule of one group, which
    Lightning trains on; a DataModule whose data is one group binds to it in :meth:`setup`.
    A missing ``root`` whose folder name starts with ``synthetic`` is generated first.
    """

    def __init__(
        self,
        root: str = "data/synthetic",
        layout: str = "auto",
        machine_type: str | list[str] | None = None,
        machine_id: str | list[str] | None = None,
        per_id: bool = False,
        protocol: str = "clean",
        train_fraction: float = 0.8,
        train_from_test: float = 0.0,
        sample_rate: int = 16000,
        clip_seconds: float | None = 10.0,
        channel: int | str = 0,
        batch_size: int = 16,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        strict: bool = False,
        generate_if_missing: bool = True,
        synthetic_size: str = "small",
        synthetic_difficulty: str = "easy",
        snr: int | str | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
        for name, value, low, high in (
            ("val_fraction", val_fraction, 0.0, 1.0),
            ("train_from_test", train_from_test, 0.0, 1.0),
        ):
            if not low <= value < high:
                raise ValueError(f"{name} must be in [{low}, {high}), got {value}")
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        if clip_seconds is not None and not clip_seconds > 0:
            raise ValueError(f"clip_seconds must be > 0 or null (whole clips), got {clip_seconds}")
        if sample_rate <= 0 or batch_size < 1 or num_workers < 0:
            raise ValueError("sample_rate and batch_size must be positive, num_workers >= 0")
        check_channel(channel)
        self.root = root
        self.layout = layout
        self.machine_type = None if machine_type in ALL else machine_type
        self.machine_id = None if machine_id in ALL else machine_id
        self.sample_rate = sample_rate
        self.clip_seconds = clip_seconds
        self.channel = channel
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.strict = strict
        self.group: Group | None = None
        self._class_names: list[str] | None = None
        self.num_samples: int | None = None
        self._groups: list[Group] | None = None

    # ------------------------------------------------------------------ data preparation
    def prepare_data(self) -> None:
        """Write the synthetic dataset when ``root`` is missing (rank 0 only)."""
        if self.hparams.generate_if_missing:
            from aad.data import synthetic

            kwargs: dict[str, Any] = {
                "size": self.hparams.synthetic_size,
                "difficulty": self.hparams.synthetic_difficulty,
            }
            if self.layout in synthetic.SYNTHETIC_LAYOUTS:  # e.g. data/synthetic_mimii + mimii
                kwargs["layout"] = self.layout
            synthetic.generate_if_missing(self.root, **kwargs)

    def manifest(self) -> Manifest:
        """The selected clips under ``root`` (types, ids, SNR; borrowing applied)."""
        manifest = read_manifest(
            self.root, self.layout, seed=self.seed, snr=self.hparams.snr, strict=self.strict
        )
        for column, wanted in (
            ("machine_type", self.machine_type),
            ("machine_id", self.machine_id),
        ):
            selected = manifest.filter(**{column: wanted})
            names = [wanted] if isinstance(wanted, str) else list(wanted or [])
            missing = [n for n in names if n not in selected.unique(column)]
            if missing:
                raise ValueError(
                    f"{column} {', '.join(map(repr, missing))} not found under {self.root}; "
                    f"available: {manifest.unique(column)}"
                )
            manifest = selected
        return borrow_test_normals(manifest, self.hparams.train_from_test, self.seed)

    def groups(self) -> list[Group]:
        """Screened groups of clips, one model each (computed once): bad clips are left out
        before the split rules run, so every group's counts and notes are what it trains on."""
        if self._groups is None:
            self.prepare_data()
            hp = self.hparams
            manifest, skipped = self._screen(self.manifest())
            groups = make_groups(
                manifest,
                per_id=hp.per_id,
                protocol=hp.protocol,
                train_fraction=hp.train_fraction,
                val_fraction=hp.val_fraction,
                seed=self.seed,
            )
            for group in groups:
                group.skipped = [
                    (record, reason)
                    for record, reason in skipped
                    if record.machine_type == group.machine_type
                    and group.machine_id in (None, record.machine_id)
                ]
            self._groups = groups
        return self._groups

    def _screen(self, manifest: Manifest) -> tuple[Manifest, list[tuple[ClipRecord, str]]]:
        """``(good clips, skipped test clips with their reason)``; one warning for all."""
        study = self.hparams.protocol == "study"
        fitting = [r for r in manifest if r.label == "normal" and (study or r.split == "train")]
        chosen = {r.path for r in fitting}
        testing = [r for r in manifest if r.path not in chosen]
        records = [*fitting, *testing]
        if self.clip_seconds is None:  # the median length of the clips whose header reads
            records = screen_clips(
                records, self.sample_rate, self.channel, decode=False, progress=False
            ).good.records
        length = clip_length(self.clip_seconds, self.sample_rate, records)
        minimum = int(length * MIN_CLIP_FRACTION)
        screens = [
            screen_clips(clips, self.sample_rate, self.channel, min_samples=minimum,
                         reject_silent=silent)
            for clips, silent in ((fitting, True), (testing, False))
        ]  # fmt: skip
        rejected = [r for screen in screens for r in screen.rejected]
        if rejected:
            message = screens[0].describe("training clips") if screens[0].rejected else ""
            if screens[1].rejected:
                message += ("\n" if message else "") + screens[1].describe("test clips")
            if self.strict:
                raise AudioDecodeError(message)
            warnings.warn(
                f"{message}\n(left out of training, normalisation, threshold and "
                "scoring; data.strict=true refuses them)",
                stacklevel=2,
            )
        rates = set().union(*(screen.rates for screen in screens))
        if rates - {self.sample_rate}:
            warnings.warn(
                f"clips have sample rates {', '.join(map(str, sorted(rates)))} Hz; they are "
                f"resampled to {self.sample_rate} Hz when loaded",
                stacklevel=2,
            )
        self.num_samples = length
        bad = {r.record.path for r in rejected}
        good = Manifest(r for r in manifest if r.path not in bad)
        return good, [(r.record, r.reason) for r in screens[1].rejected]

    def for_group(
        self,
        group: Group,
        sample_rate: int | None = None,
        class_names: list[str] | None = None,
    ) -> MachineSoundDataModule:
        """A new DataModule bound to one group (at ``sample_rate``, e.g. a model's own rate);
        its hparams (written into checkpoints) name the group's machine type and id.
        ``class_names``: the ids ``batch["class_index"]`` counts in (default: the group's
        training ids; a trained classifier passes its own, so other data keeps its ids)."""
        rate = sample_rate or self.sample_rate
        own = {k: v for k, v in self.hparams.items() if not str(k).startswith("_")}
        bound = MachineSoundDataModule(
            **{
                **own,
                "machine_type": group.machine_type,
                "machine_id": group.machine_id,
                "sample_rate": rate,
            }
        )
        bound.batch_size, bound.num_workers = self.batch_size, self.num_workers
        bound.group, bound._groups = group, [group]
        bound._class_names = list(class_names) if class_names else None
        records = [*group.train, *group.test] or group.val
        bound.num_samples = clip_length(bound.clip_seconds, rate, records)
        return bound

    def setup(self, stage: str | None = None) -> None:
        """Bind to the data's only group (several: use :meth:`for_group`)."""
        if self.group is None:
            groups = self.groups()
            if len(groups) != 1:
                labels = [g.label for g in groups]
                raise ValueError(
                    f"{len(groups)} groups of clips under {self.root} ({labels}): train one "
                    "model per group (train.py does), or choose data.machine_type"
                )
            self.group = groups[0]
            self.num_samples = clip_length(
                self.clip_seconds, self.sample_rate, [*self.group.train, *self.group.test]
            )
        if stage in (None, "fit") and not self.group.train:
            raise ValueError(
                f"no usable normal training clips for {self.group.label} under {self.root}; "
                "a test-only folder can be evaluated, or trained on a share of its normal "
                "test clips with data.train_from_test (e.g. 0.5)"
            )

    # ------------------------------------------------------------------ access
    @property
    def class_names(self) -> list[str]:
        """The bound group's training machine ids (``batch["class_index"]`` indexes them)."""
        if self.group is None:
            raise RuntimeError("call setup() or for_group() before class_names")
        return self._class_names or self.group.class_names

    @property
    def attribute_labels(self) -> list[str]:
        """The bound group's training ids with attributes (``batch["label_index"]``)."""
        if self.group is None:
            raise RuntimeError("call setup() or for_group() before attribute_labels")
        return self.group.attribute_labels

    def records(self, stage: str) -> list[ClipRecord]:
        """Records of a stage (fit/validate/test/predict), aligned with batch ``index``."""
        if self.group is None:
            raise RuntimeError("call setup() before records()")
        key = STAGE_ALIASES.get(stage, stage)
        by_stage = {
            "fit": self.group.train,
            "validate": self.group.val,
            "test": self.group.test,
            "predict": self.group.test,
        }
        if key not in by_stage:
            raise ValueError(f"stage must be one of fit/validate/test/predict, got {stage!r}")
        return by_stage[key]

    def dataset(self, stage: str, records: Sequence[ClipRecord] | None = None) -> ClipDataset:
        """The stage's clips (or ``records``) as a dataset, cut to this data's clip length."""
        chosen = self.records(stage) if records is None else records
        bound = self.group is not None
        return ClipDataset(chosen, self.sample_rate, self.num_samples, self.channel,
                           self.class_names if bound else (),
                           self.attribute_labels if bound else ())  # fmt: skip

    def loader(
        self, stage: str, shuffle: bool = False, records: Sequence[ClipRecord] | None = None
    ) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.dataset(stage, records),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self.loader("fit", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("validate")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")
