"""``AnomalyModule``: the LightningModule every aad reconstruction model derives from.

It owns the feature front-end (``self.features``), the normalisation statistics
(``self.normalizer``, fitted on normal training clips at ``on_fit_start``), the decision
threshold buffer, and the test/predict steps, which score through :mod:`aad.scoring`.
A subclass builds its plain torch model and implements :meth:`training_loss`,
:meth:`frame_errors` and :meth:`encode`.
"""

from __future__ import annotations

import importlib
import inspect
import math
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from aad.features.config import FeatureConfig
from aad.features.extractor import FeatureExtractor
from aad.features.normalization import FeatureNormalizer
from aad.metrics import binary_metrics
from aad.scoring import score_batch, score_dataloader, scores_frame
from aad.thresholds import fit_threshold

FORMAT_VERSION = 1
NOMINAL_SECONDS = 1.0


def aad_version() -> str:
    """The running aad version (``aad.__version__``)."""
    import aad

    return str(getattr(aad, "__version__", "unknown"))


class CheckpointError(ValueError):
    """A checkpoint that aad cannot use (unreadable, foreign, other format, other features)."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the message names the step."""


class AnomalyModule(L.LightningModule):
    """Features + normaliser + threshold around a reconstruction model.

    Args:
        features: a (partial) :class:`FeatureConfig` as a nested dict; ``None`` = defaults.
        normalize: standardise features with statistics of the normal training clips.
        learning_rate, weight_decay: Adam settings.
        threshold_method, threshold_quantile: see :func:`aad.thresholds.fit_threshold`.
    """

    def __init__(
        self,
        features: dict[str, Any] | None = None,
        normalize: bool = True,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        threshold_method: str = "gamma",
        threshold_quantile: float = 0.9,
    ) -> None:
        super().__init__()
        self.feature_config = FeatureConfig.from_dict(features or {})
        self.features = FeatureExtractor(self.feature_config)
        self.input_dim = int(
            self.features.output_dim(int(self.feature_config.sample_rate * NOMINAL_SECONDS))
        )
        self.normalizer = FeatureNormalizer(self.input_dim)
        self.normalize = normalize
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.threshold_method = threshold_method
        self.threshold_quantile = threshold_quantile
        self.register_buffer("threshold", torch.tensor(math.nan, dtype=torch.float64))
        self._val_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_results: pd.DataFrame | None = None

    # ----------------------------------------------------------------- subclass API
    def training_loss(self, features: torch.Tensor) -> torch.Tensor:
        """Scalar loss of a batch of normalised features ``(B, T, D)``."""
        raise NotImplementedError

    def frame_errors(self, features: torch.Tensor) -> torch.Tensor:
        """Per-frame reconstruction error ``(B, T')`` of normalised features ``(B, T, D)``."""
        raise NotImplementedError

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Latent embedding ``(B, latent)`` of normalised features ``(B, T, D)``."""
        raise NotImplementedError

    # ----------------------------------------------------------------- features
    @property
    def sample_rate(self) -> int:
        return int(self.feature_config.sample_rate)

    @property
    def feature_signature(self) -> str:
        return self.feature_config.signature()

    @property
    def normalizer_fitted(self) -> bool:
        return bool(self.normalizer.fitted)

    def prepare_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, S)`` -> normalised float32 features ``(B, T, D)`` (autocast off)."""
        with torch.no_grad(), torch.autocast(device_type=waveform.device.type, enabled=False):
            features = self.features(waveform.float())
            if self.normalize:
                features = self.normalizer(features)
        return features.float()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and "waveform" in batch and "features" not in batch:
            batch["features"] = self.prepare_features(batch["waveform"])
        return batch

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        data_rate = getattr(datamodule, "sample_rate", None)
        if data_rate is not None and int(data_rate) != self.sample_rate:
            raise ValueError(
                f"data.sample_rate={data_rate} but the model's features expect "
                f"{self.sample_rate} Hz; set both to the same rate"
            )
        if self.normalize and not self.normalizer_fitted:
            self.fit_normalizer(self._train_loader())

    def _train_loader(self) -> Any:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            return datamodule.train_dataloader()
        return self.trainer.fit_loop._data_source.dataloader()

    @torch.no_grad()
    def fit_normalizer(self, dataloader: Any) -> None:
        """Feature mean/std over the normal clips of ``dataloader`` (one pass, on this device).

        Under DDP each rank decodes only every ``world_size``-th clip of the loader's dataset
        and the sums are all-reduced, so every rank ends with the statistics of the whole
        training set.
        """
        trainer = self._trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        if world > 1:
            dataset = dataloader.dataset
            dataloader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(dataset, range(rank, len(dataset), world)),
                batch_size=dataloader.batch_size,
                num_workers=dataloader.num_workers,
            )
        normalizer = self.normalizer
        normalizer.reset()
        for batch in dataloader:
            normal = batch["target"] == 0
            if not bool(normal.any()):
                continue
            waveform = batch["waveform"][normal].to(self.device).float()
            with torch.autocast(device_type=self.device.type, enabled=False):
                normalizer.update(self.features(waveform))
        count, total, total_sq = normalizer.sums()
        if trainer is not None and world > 1:
            count, total, total_sq = (
                trainer.strategy.reduce(t.to(self.device), reduce_op="sum")
                for t in (count, total, total_sq)
            )
        if float(count) == 0:
            raise ValueError(
                "no normal clips in the training data: the normaliser and the model are "
                "fitted on normal clips only (check data.root, data.machine_type and the "
                "train/ folders)"
            )
        normalizer.finalize_from_sums(count, total, total_sq)

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        features = batch["features"]
        normal = batch["target"] == 0
        if not bool(normal.all()):
            features = features[normal]
        loss = self.training_loss(features)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, global step "
                f"{self.global_step}, batch {batch_idx}; stopping. The last good checkpoint is "
                "the one saved before this step (last.ckpt); lower model.learning_rate"
            )
        self.log(
            "train/loss",
            loss,
            prog_bar=True,
            on_step=True,
            on_epoch=True,
            batch_size=features.shape[0],
        )
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = score_batch(self, batch)
        self._val_outputs.append((output.clip_scores.detach(), batch["target"].detach()))

    def on_validation_epoch_start(self) -> None:
        self._val_outputs = []

    def on_validation_epoch_end(self) -> None:
        if self._val_outputs:
            scores = torch.cat([s for s, _ in self._val_outputs]).double()
            targets = torch.cat([t for _, t in self._val_outputs])
        else:
            scores = torch.zeros(0, dtype=torch.float64, device=self.device)
            targets = torch.zeros(0, dtype=torch.long, device=self.device)
        self._val_outputs = []
        normal = targets != 1
        total = torch.stack([scores[normal].sum(), normal.sum().double()])
        total = self.trainer.strategy.reduce(total, reduce_op="sum") if self._trainer else total
        if total[1] > 0:
            self.log("val/loss", (total[0] / total[1]).float(), prog_bar=True, sync_dist=False)
        if self._trainer is not None and self.trainer.world_size > 1:
            scores, targets = self._gather_ragged(scores, targets)
        labels = targets.cpu().numpy()
        if (labels == 0).any() and (labels == 1).any():
            result = binary_metrics(labels, scores.cpu().numpy())
            self.log("val/auc", result["auc"], prog_bar=True)
            self.log("val/pauc", result["pauc"])

    def _gather_ragged(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """all_gather of 1-D tensors whose length differs between ranks."""
        size = torch.tensor([tensors[0].shape[0]], device=self.device)
        sizes = self.all_gather(size).flatten()
        longest = int(sizes.max().item())
        gathered = []
        for tensor in tensors:
            padded = torch.zeros(longest, dtype=tensor.dtype, device=self.device)
            padded[: tensor.shape[0]] = tensor
            everything = self.all_gather(padded).reshape(-1, longest)
            rows = zip(everything, sizes, strict=True)
            gathered.append(torch.cat([row[: int(n)] for row, n in rows]))
        return tuple(gathered)

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        output = score_batch(self, batch)
        self._test_outputs.append(
            (batch["index"].detach(), batch["target"].detach(), output.clip_scores.detach())
        )

    def on_test_epoch_end(self) -> None:
        index = torch.cat([o[0] for o in self._test_outputs]).long()
        scores = torch.cat([o[2] for o in self._test_outputs]).double()
        self._test_outputs = []
        if self.trainer.world_size > 1:
            index, scores = self._gather_ragged(index, scores)
        # DistributedSampler pads with repeats: keep the first score of every clip
        index_np, first = np.unique(index.cpu().numpy(), return_index=True)
        scores_np = scores.cpu().numpy()[first]
        records = self.trainer.datamodule.records("test")
        self.test_results = scores_frame(records, index_np, scores_np, float(self.threshold))
        result = binary_metrics(self.test_results["target"], self.test_results["score"])
        for name, value in result.items():
            if not math.isnan(value):
                self.log(f"test/{name}", value, rank_zero_only=True)

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        output = score_batch(self, batch)
        decision = (output.clip_scores.double() > self.threshold).long()
        return {
            "index": batch["index"],
            "score": output.clip_scores,
            "decision": decision,
            "frame_errors": output.frame_errors,
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )

    # ----------------------------------------------------------------- threshold
    def fit_threshold(self, dataloader: Any) -> float:
        """Score the normal clips of ``dataloader`` in eval mode; store and return the threshold."""
        scored = score_dataloader(self, dataloader)
        normal_scores = scored["score"][scored["target"] == 0]
        if normal_scores.size == 0:
            raise ValueError("no normal clips to fit the decision threshold on")
        value = fit_threshold(normal_scores, self.threshold_method, self.threshold_quantile)
        self.threshold.fill_(value)
        return value

    # ----------------------------------------------------------------- checkpoints
    def checkpoint_metadata(self) -> dict[str, Any]:
        cls = type(self)
        meta: dict[str, Any] = {
            "aad_version": aad_version(),
            "format_version": FORMAT_VERSION,
            "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "feature_config": asdict(self.feature_config),
            "feature_signature": self.feature_signature,
            "sample_rate": self.sample_rate,
            "threshold": float(self.threshold),
            "threshold_method": self.threshold_method,
            "threshold_quantile": self.threshold_quantile,
        }
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and getattr(datamodule, "hparams", None):
            meta["datamodule_hparams"] = dict(datamodule.hparams)
        return meta

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["aad"] = self.checkpoint_metadata()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_metadata(checkpoint, "checkpoint")


def check_checkpoint_metadata(checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
    """The checkpoint's ``aad`` block, or :class:`CheckpointError` saying why it is unusable."""
    meta = checkpoint.get("aad") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path} is not an aad checkpoint (no 'aad' metadata block: written by another "
            "program or an aad older than format 1)"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version} (written by aad "
            f"{meta.get('aad_version', '?')}); this aad {aad_version()} reads format "
            f"{FORMAT_VERSION} only: evaluate it with the aad version that trained it, or retrain"
        )
    return meta


def _import(dotted: str) -> type:
    module_name, _, name = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError) as error:
        raise CheckpointError(
            f"checkpoint model class {dotted} cannot be imported: {error}"
        ) from None


def load_module(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[AnomalyModule, dict[str, Any]]:
    """Rebuild a trained module from a checkpoint alone: model, features, normaliser, threshold.

    Returns ``(module in eval mode, checkpoint dict)``. Raises ``FileNotFoundError`` for a
    missing file and :class:`CheckpointError` (with the reason) for an unreadable file, a
    checkpoint of another program or format version, or a feature config this aad computes
    differently from the one the model was trained with.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as error:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(error).__name__}: {error} "
            "(truncated or corrupt file, or not a PyTorch checkpoint)"
        ) from None
    meta = check_checkpoint_metadata(checkpoint, str(path))
    if meta.get("aad_version") != aad_version():
        warnings.warn(
            f"{path} was written by aad {meta.get('aad_version')}, this is aad {aad_version()} "
            f"(same checkpoint format {FORMAT_VERSION}: loading it)",
            stacklevel=2,
        )
    cls = _import(meta["model_class"])
    parameters = inspect.signature(cls.__init__).parameters
    hparams = {
        k: v for k, v in dict(checkpoint.get("hyper_parameters", {})).items() if k in parameters
    }
    stored = meta["feature_config"]
    try:
        hparams["features"] = stored
        module = cls(**hparams)
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"feature config mismatch: {path} was trained with features this aad cannot "
            f"build ({error})"
        ) from None
    if module.feature_signature != meta["feature_signature"]:
        rebuilt = asdict(module.feature_config)
        changed = sorted(k for k in set(rebuilt) | set(stored) if rebuilt.get(k) != stored.get(k))
        detail = ", ".join(changed) if changed else "none: the front-end code changed"
        raise CheckpointError(
            f"feature config mismatch: {path} was trained with feature signature "
            f"{meta['feature_signature']} but this aad computes {module.feature_signature} "
            f"from the same config (fields differing after rebuilding: {detail}); "
            "retrain or use the aad version that trained it"
        )
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit {cls.__name__}: {error}") from None
    return module.eval(), checkpoint
