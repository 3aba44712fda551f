"""``AnomalyModule``: the LightningModule every aad model derives from.

It owns the feature front-end (``self.features``), the normalisation statistics
(``self.normalizer``, fitted on the normal training clips at ``on_fit_start``), the decision
threshold and the score's statistics. Both are fitted on the validation clips (normal only)
at the end of every validation epoch, so every checkpoint Lightning writes is complete: it
scores and decides on its own, and no finished checkpoint is ever rewritten.

A reconstruction model implements :meth:`training_loss`, :meth:`reconstruction_errors` and
:meth:`encode`; a model with its own frame scores (e.g. a classifier) overrides
:meth:`frame_scores` instead of :meth:`reconstruction_errors`.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torchmetrics.classification import BinaryAUROC

from aad.features.config import FeatureConfig
from aad.features.extractor import FeatureExtractor
from aad.features.normalization import FeatureNormalizer
from aad.scoring import SCORES, ErrorCovariance, ScoreOutput, pool_frames, score_loader
from aad.thresholds import (
    DEFAULT_METHOD,
    DEFAULT_QUANTILE,
    check_threshold_settings,
    fit_threshold,
)

NOMINAL_SECONDS = 1.0
MAX_FPR = 0.1


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf; the message names the step."""


class _Chain:
    """Several loaders as one re-iterable loader."""

    def __init__(self, loaders: list[Any]) -> None:
        self.loaders = loaders

    def __iter__(self) -> Any:
        for loader in self.loaders:
            yield from loader


class AnomalyModule(L.LightningModule):
    """Features + normaliser + score + threshold around a model trained on normal clips.

    ``uses_clip_features``: whether batches get whole-clip features on the device before a
    step (``batch["features"]``); a model that cuts crops from the waveform first sets it off
    and computes features itself with :meth:`prepare_features`.

    Args:
        features: a (partial) :class:`FeatureConfig` as a nested dict; ``None`` = defaults.
        normalize: standardise features with statistics of the normal training clips.
        learning_rate, weight_decay: Adam settings.
        score: how frame scores become a clip score, one of :data:`aad.scoring.SCORES`.
        top_k: frames averaged by ``score="topk"``.
        threshold_method, threshold_quantile: see :func:`aad.thresholds.fit_threshold`.
    """

    uses_clip_features: bool = True

    def __init__(
        self,
        features: dict[str, Any] | None = None,
        normalize: bool = True,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        score: str = "mean",
        top_k: int = 32,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
    ) -> None:
        super().__init__()
        if score not in SCORES:
            raise ValueError(f"score must be one of {SCORES}, got {score!r}")
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        if learning_rate <= 0 or weight_decay < 0:
            raise ValueError("learning_rate must be > 0 and weight_decay >= 0")
        check_threshold_settings(threshold_method, threshold_quantile)
        self.feature_config = FeatureConfig.from_dict(features or {})
        self.features = FeatureExtractor(self.feature_config)
        self.input_dim = int(
            self.features.output_dim(int(self.feature_config.sample_rate * NOMINAL_SECONDS))
        )
        self.normalizer = FeatureNormalizer(self.input_dim)
        self.normalize = normalize
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.score_name = score
        self.top_k = top_k
        self.threshold_method = threshold_method
        self.threshold_quantile = threshold_quantile
        self.register_buffer("threshold", torch.tensor(math.nan, dtype=torch.float64))
        self.error_covariance: ErrorCovariance | None = None
        self.test_auc = BinaryAUROC()
        self.test_pauc = BinaryAUROC(max_fpr=MAX_FPR)

    def configure_score(self, error_dim: int) -> None:
        """Subclasses call this with the width of their error vectors (mahalanobis score)."""
        if self.score_name == "mahalanobis":
            self.error_covariance = ErrorCovariance(error_dim)

    # ----------------------------------------------------------------- subclass API
    def training_loss(self, features: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        """Scalar loss of a batch of normalised normal-clip features ``(B, T, D)``."""
        raise NotImplementedError

    def reconstruction_errors(self, features: torch.Tensor) -> torch.Tensor:
        """Signed error vectors ``(B, T', D')`` (input minus reconstruction) per frame."""
        raise NotImplementedError

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Latent embedding ``(B, L)`` of normalised features ``(B, T, D)``."""
        raise NotImplementedError

    def frame_scores(self, features: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Per-frame anomaly scores ``(B, T')`` of whole-clip ``features`` (None when
        ``uses_clip_features`` is off): squared error, or its Mahalanobis distance."""
        errors = self.reconstruction_errors(features).float()
        if self.error_covariance is not None:
            return self.error_covariance(errors)
        return errors.square().mean(dim=-1)

    def frame_times(self, num_frames: int) -> Any:
        """Centre time (s) of each of ``num_frames`` scored frames (stacked: the stack centre)."""
        import numpy as np

        first = self.feature_config.features[0]
        k = self.feature_config.stack_frames
        centres = self.features.frame_times(first, num_frames + k - 1) / self.sample_rate
        return centres if k == 1 else np.convolve(centres, np.ones(k) / k, mode="valid")

    # ----------------------------------------------------------------- features
    @property
    def sample_rate(self) -> int:
        return int(self.feature_config.sample_rate)

    @property
    def feature_signature(self) -> str:
        return self.feature_config.signature()

    def prepare_features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Waveforms ``(B, S)`` -> normalised float32 features ``(B, T, D)`` (autocast off)."""
        with torch.no_grad(), torch.autocast(device_type=waveform.device.type, enabled=False):
            features = self.features(waveform.float())
            if self.normalize:
                features = self.normalizer(features)
        return features.float()

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if not self.uses_clip_features:
            return batch
        if isinstance(batch, dict) and "waveform" in batch and "features" not in batch:
            batch["features"] = self.prepare_features(batch["waveform"])
        return batch

    def on_fit_start(self) -> None:
        if self.normalize and not self.normalizer.fitted:
            datamodule = getattr(self.trainer, "datamodule", None)
            if datamodule is None:
                raise ValueError(
                    "fit with a datamodule (trainer.fit(model, datamodule=...)) or call "
                    "model.fit_normalizer(loader) first: the normaliser is fitted on normal "
                    "training clips before training"
                )
            self.fit_normalizer(datamodule.train_dataloader())

    @torch.no_grad()
    def fit_normalizer(self, dataloader: Any) -> None:
        """Feature mean/std over the normal clips of ``dataloader`` (one pass, this device).

        Under DDP each rank decodes every ``world_size``-th clip and the sums are all-reduced.
        """
        trainer = self._trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer else (1, 0)
        if world > 1:
            dataloader = torch.utils.data.DataLoader(
                torch.utils.data.Subset(
                    dataloader.dataset, range(rank, len(dataloader.dataset), world)
                ),
                batch_size=dataloader.batch_size,
                num_workers=dataloader.num_workers,
            )
        self.normalizer.reset()
        for batch in dataloader:
            normal = batch["target"] == 0
            if bool(normal.any()):
                waveform = batch["waveform"][normal].to(self.device).float()
                with torch.autocast(device_type=self.device.type, enabled=False):
                    self.normalizer.update(self.features(waveform))
        sums = self.normalizer.sums()
        if trainer is not None and world > 1:
            sums = tuple(trainer.strategy.reduce(t.to(self.device), reduce_op="sum") for t in sums)
        if float(sums[0]) == 0:
            raise ValueError("no normal clips in the training data to fit the normaliser on")
        self.normalizer.finalize_from_sums(*sums)

    # ----------------------------------------------------------------- scoring
    def score(self, batch: dict[str, Any]) -> ScoreOutput:
        """THE scoring of a batch: frame scores of its features, pooled per clip (float32)."""
        features = batch.get("features")
        if features is None and self.uses_clip_features:
            features = self.prepare_features(batch["waveform"].to(self.device))
        with torch.no_grad(), torch.autocast(device_type=self.device.type, enabled=False):
            clip_features = features.float() if features is not None else None
            frames = self.frame_scores(clip_features, batch).float()
        return ScoreOutput(pool_frames(frames, self.score_name, self.top_k), frames)

    def decide(self, clip_scores: torch.Tensor) -> torch.Tensor:
        """1 = anomaly (score above the threshold); all 0 while no threshold is fitted."""
        if not torch.isfinite(self.threshold):
            return torch.zeros_like(clip_scores, dtype=torch.long)
        return (clip_scores.double() > self.threshold).long()

    @torch.no_grad()
    def calibrate(self, loader: Any, statistics_loader: Any = None) -> float:
        """Fit the score's statistics on the normal clips of ``statistics_loader`` (default:
        ``loader``), then the threshold on the scores of the normal clips of ``loader``.

        Runs at the end of every validation epoch (statistics from the training clips, the
        threshold from the held-out validation clips, so neither is judged on the clips it
        was fitted on when there are enough clips to hold some out) and so each checkpoint
        holds both; callable directly for models trained outside Lightning. Returns the
        threshold.
        """
        was_training = self.training
        self.eval()
        try:
            if self.error_covariance is not None:
                self._fit_error_covariance(statistics_loader or loader)
            scored = score_loader(self, self._on_device(loader))
        finally:
            self.train(was_training)
        normal = scored.score[scored.target == 0]
        normal = self._all_scores(torch.as_tensor(normal, device=self.device)).cpu().numpy()
        if normal.size == 0:
            raise ValueError("no normal clips to fit the decision threshold on")
        value = fit_threshold(normal, self.threshold_method, self.threshold_quantile)
        self.threshold.fill_(value)
        return value

    def _fit_error_covariance(self, loader: Any) -> None:
        assert self.error_covariance is not None
        self.error_covariance.reset()
        for batch in self._on_device(loader):
            normal = batch["target"] == 0
            features = self.prepare_features(batch["waveform"][normal])
            errors = self.reconstruction_errors(features).float()
            domain = batch.get("domain", torch.zeros_like(batch["target"]))[normal]
            frames = errors.shape[1]
            self.error_covariance.update(
                errors.flatten(0, 1), domain.to(errors.device).repeat_interleave(frames)
            )
        sums = self.error_covariance.sums()
        if self._trainer is not None and self.trainer.world_size > 1:
            sums = tuple(
                self.trainer.strategy.reduce(t.to(self.device), reduce_op="sum") for t in sums
            )
        self.error_covariance.finalize(sums)

    def _on_device(self, loader: Any) -> Any:
        for batch in loader:
            yield {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}

    def _all_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Every rank's scores under DDP (ragged all_gather), else ``scores``."""
        if self._trainer is None or self.trainer.world_size == 1:
            return scores
        size = torch.tensor([scores.shape[0]], device=self.device)
        sizes = self.all_gather(size).flatten()
        padded = torch.zeros(int(sizes.max()), dtype=scores.dtype, device=self.device)
        padded[: scores.shape[0]] = scores
        rows = self.all_gather(padded).reshape(len(sizes), -1)
        return torch.cat([row[: int(n)] for row, n in zip(rows, sizes, strict=True)])

    # ----------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        normal = batch["target"] == 0
        features = batch["features"] if bool(normal.all()) else batch["features"][normal]
        loss = self.training_loss(features, batch)
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
        normal = batch["target"] == 0
        if bool(normal.any()):
            loss = self.training_loss(batch["features"][normal], batch)
            self.log("val/loss", loss, prog_bar=True, batch_size=int(normal.sum()), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        loaders = self.trainer.val_dataloaders
        validation = _Chain(loaders if isinstance(loaders, list | tuple) else [loaders])
        self.calibrate(validation, statistics_loader=self.trainer.train_dataloader)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        labelled = batch["target"] >= 0
        if bool(labelled.any()):
            scores = self.score(batch).clip_scores[labelled]
            self.test_auc.update(scores, batch["target"][labelled])
            self.test_pauc.update(scores, batch["target"][labelled])

    def on_test_epoch_end(self) -> None:
        if self.test_auc.update_count:
            self.log("test/auc", self.test_auc.compute())
            self.log("test/pauc", self.test_pauc.compute())
        self.test_auc.reset()
        self.test_pauc.reset()

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        output = self.score(batch)
        return {
            "index": batch["index"],
            "score": output.clip_scores,
            "decision": self.decide(output.clip_scores),
            "frame_scores": output.frame_scores,
        }

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from aad.checkpoints import checkpoint_metadata

        checkpoint["aad"] = checkpoint_metadata(self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        from aad.checkpoints import check_metadata

        check_metadata(checkpoint, "checkpoint")
