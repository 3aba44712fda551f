"""Waveform batches for Lightning: ``ClipDataset`` and ``MachineSoundDataModule``.

Batches are dicts ``{"waveform": float32 (B, S), "target": int64 (B,), "index": int64 (B,)}``;
``index`` points into ``datamodule.records(stage)``. Only PCM travels through the
DataLoader; features are computed on the device.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from aad.data.audio import (
    AudioDecodeError,
    check_channel,
    clip_num_samples,
    load_waveform,
    validate_clips,
)
from aad.data.manifest import ClipRecord, Manifest
from aad.data.readers import list_machine_types, read_manifest
from aad.data.splits import borrow_test_normals

__all__ = ["ClipDataset", "MachineSoundDataModule", "list_machine_types", "records_from_paths"]

STAGE_ALIASES = {"train": "fit", "val": "validate", "validation": "validate"}


class ClipDataset(Dataset):
    """Clips decoded on access: ``{"waveform", "target", "index"}`` per item.

    A clip that fails to decode (NaN/Inf samples, corrupt data the header check missed)
    raises :class:`AudioDecodeError` naming the clip: it is not silently replaced.
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        sample_rate: int = 16000,
        num_samples: int | None = None,
        channel: int | str = 0,
    ) -> None:
        self.records = list(records)
        self.sample_rate = sample_rate
        self.num_samples = num_samples
        self.channel = channel

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        record = self.records[index]
        try:
            waveform = load_waveform(record.path, self.sample_rate, self.channel, self.num_samples)
        except AudioDecodeError:
            raise
        except Exception as err:  # anything else still names the clip
            raise AudioDecodeError(f"cannot load {record.path}: {err}") from err
        return {
            "waveform": waveform,
            "target": torch.tensor(record.target, dtype=torch.int64),
            "index": torch.tensor(index, dtype=torch.int64),
        }


def records_from_paths(paths: Sequence[str | Path], machine_type: str | None = None) -> Manifest:
    """Loose WAV files as unlabelled test records (``machine_type`` or ``"unknown"``)."""
    return Manifest(
        ClipRecord(str(Path(p)), "files", machine_type or "unknown", "", "test", "unknown")
        for p in paths
    )


def clip_length(
    clip_seconds: float | None, sample_rate: int, records: Sequence[ClipRecord] | Manifest
) -> int | None:
    """Samples per clip: ``clip_seconds`` at ``sample_rate``, else the first clip's length
    (``None`` when there are no clips). Clips are then padded/cropped to it."""
    if clip_seconds:
        return int(round(clip_seconds * sample_rate))
    if not len(records):
        return None
    return clip_num_samples(records[0].path, sample_rate)


class MachineSoundDataModule(L.LightningDataModule):
    """Machine-sound clips from any supported layout, as waveform batches.

    ``setup`` reads the manifest, keeps ``machine_type``/``machine_id``, drops clips whose
    headers are bad (``strict`` raises instead), holds out a seeded ``val_fraction`` of the
    normal training clips for validation, and uses the test split for test and predict
    (or ``predict_paths`` when given). ``snr`` keeps one raw-MIMII SNR folder (e.g. ``0`` or
    ``"6_dB"``). ``train_from_test`` (default 0) trains on a seeded fraction of the test
    normals of a test-only folder (see :func:`borrow_test_normals`). When ``root`` does not
    exist, ``generate_if_missing`` is true and its folder name starts with ``synthetic``, a
    synthetic dataset is written there first (in ``layout`` when that is ``dcase2020``,
    ``mimii`` or ``dcase2021``, else DCASE 2020); any other missing root is an error.
    """

    def __init__(
        self,
        root: str = "data/synthetic",
        layout: str = "auto",
        machine_type: str | None = None,
        machine_id: str | None = None,
        sample_rate: int = 16000,
        clip_seconds: float | None = 10.0,
        channel: int | str = 0,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        strict: bool = False,
        generate_if_missing: bool = True,
        synthetic_size: str = "small",
        predict_paths: list[str] | None = None,
        snr: int | str | None = None,
        train_from_test: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if not 0.0 <= train_from_test < 1.0:
            raise ValueError(f"train_from_test must be in [0, 1), got {train_from_test}")
        check_channel(channel)
        self.root = root
        self.layout = layout
        self.machine_type = machine_type
        self.machine_id = machine_id
        self.sample_rate = sample_rate
        self.clip_seconds = clip_seconds
        self.channel = channel
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.strict = strict
        self.generate_if_missing = generate_if_missing
        self.synthetic_size = synthetic_size
        self.predict_paths = list(predict_paths) if predict_paths else None
        self.snr = snr
        self.train_from_test = train_from_test
        self.num_samples: int | None = None
        self.manifest: Manifest | None = None
        self._records: dict[str, list[ClipRecord]] = {}

    @classmethod
    def from_paths(cls, paths: Sequence[str | Path], **kwargs: Any) -> MachineSoundDataModule:
        """A datamodule that predicts on loose WAV files (label unknown)."""
        kwargs.setdefault("generate_if_missing", False)
        return cls(predict_paths=[str(p) for p in paths], **kwargs)

    # ------------------------------------------------------------------ data preparation
    def prepare_data(self) -> None:
        """Write the synthetic dataset when ``root`` is missing (rank 0 only)."""
        self._generate_if_missing()

    def _generate_if_missing(self) -> None:
        if self.predict_paths is None and self.generate_if_missing:
            from aad.data import synthetic

            kwargs: dict[str, Any] = {"size": self.synthetic_size}
            if self.layout in synthetic.SYNTHETIC_LAYOUTS:  # e.g. data/synthetic_mimii + mimii
                kwargs["layout"] = self.layout
            synthetic.generate_if_missing(self.root, **kwargs)

    def _selected_manifest(self) -> Manifest:
        manifest = read_manifest(
            self.root, self.layout, seed=self.seed, snr=self.snr, strict=self.strict
        )
        if self.machine_type is not None:
            selected = manifest.filter(machine_type=self.machine_type)
            if not len(selected):
                raise ValueError(
                    f"machine_type {self.machine_type!r} not found under {self.root}; "
                    f"available: {manifest.machine_types}"
                )
            manifest = selected
        if self.machine_id is not None:
            selected = manifest.filter(machine_id=self.machine_id)
            if not len(selected):
                available = manifest.unique("machine_id")
                raise ValueError(
                    f"machine_id {self.machine_id!r} not found under {self.root} "
                    f"(machine_type={self.machine_type}); available: {available}"
                )
            manifest = selected
        if self.train_from_test:
            manifest = borrow_test_normals(manifest, self.train_from_test, self.seed)
        return manifest

    def setup(self, stage: str | None = None) -> None:
        """Build the per-stage record lists (idempotent)."""
        if self.manifest is None:
            self._generate_if_missing()
            if self.predict_paths is not None:
                manifest = records_from_paths(self.predict_paths, self.machine_type)
            else:
                manifest = self._selected_manifest()
            self.manifest = validate_clips(manifest, self.sample_rate, self.strict, self.channel)
            self.num_samples = clip_length(self.clip_seconds, self.sample_rate, self.manifest)
            self._split(self.manifest)
        if stage in (None, "fit") and not self._records["fit"]:
            raise ValueError(
                f"no normal training clips for machine_type={self.machine_type!r}, "
                f"machine_id={self.machine_id!r} under {self.root}; "
                "a test-only folder can be evaluated, or trained on a share of its normal "
                "test clips with train_from_test (smoke runs only)"
            )

    def _split(self, manifest: Manifest) -> None:
        train = list(manifest.filter(split="train", label="normal"))
        order = list(range(len(train)))
        random.Random(self.seed).shuffle(order)
        n_val = round(self.val_fraction * len(train))
        if self.val_fraction > 0 and len(train) > 1:
            n_val = min(max(n_val, 1), len(train) - 1)
        held_out = set(order[:n_val])
        test = list(manifest.filter(split="test"))
        fit = [r for i, r in enumerate(train) if i not in held_out]
        self._records = {
            "fit": fit,
            # nothing held out (val_fraction=0): validate on the training clips, so val/loss
            # and the callbacks monitoring it still exist
            "validate": [r for i, r in enumerate(train) if i in held_out] or fit,
            "test": test,
            "predict": list(manifest) if self.predict_paths is not None else test,
        }

    # ------------------------------------------------------------------ access
    def records(self, stage: str) -> list[ClipRecord]:
        """Records of a stage (fit/validate/test/predict), aligned with batch ``index``."""
        if not self._records:
            raise RuntimeError("call setup() before records()")
        key = STAGE_ALIASES.get(stage, stage)
        if key not in self._records:
            raise ValueError(f"stage must be one of fit/validate/test/predict, got {stage!r}")
        return self._records[key]

    def dataset(self, stage: str) -> ClipDataset:
        return ClipDataset(self.records(stage), self.sample_rate, self.num_samples, self.channel)

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(
            self.dataset(stage),
            batch_size=self.batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("fit", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("validate", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)
