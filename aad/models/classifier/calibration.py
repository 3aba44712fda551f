"""Calibration of the machine-id classifier: what a checkpoint scores with, fitted on the
normal training clips (in order, without augmentation) before every validation epoch."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from aad.models.classifier.augment import sliding_crops
from aad.models.classifier.scoring import CropOutputs, MahalanobisScorer, mahalanobis_cross_fit
from aad.models.classifier.torch_model import recalibrate_batchnorm as recalibrate_norms
from aad.thresholds import fit_threshold

DOMAINS = 2  # source, target (batch domain -1 counts as source)
CHUNK = 256  # crops per forward pass


class ClassifierCalibration:
    """Mixin of :class:`~aad.models.classifier.lightning_model.MachineIDClassifier`: BatchNorm
    recalibration, the kNN bank and Mahalanobis statistics (buffers), and the threshold."""

    def _training_clips(self) -> DataLoader:
        """The training clips in order, without augmentation (the fit loop's own loader is
        shuffled; iterating it here would shift the next epoch's order)."""
        loader = self.trainer.train_dataloader
        return DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False,
                          num_workers=loader.num_workers)  # fmt: skip

    def on_validation_epoch_start(self) -> None:
        """Calibrate on the training clips before validating, so ``val/loss`` measures the
        network with the BatchNorm statistics it scores with (skipped in sanity checks)."""
        if not self.trainer.sanity_checking:
            self.calibrate(self._training_clips())

    def on_validation_epoch_end(self) -> None:
        """Nothing: calibrated at the epoch start, on the training clips."""

    def on_train_end(self) -> None:
        if not torch.isfinite(self.threshold):  # no validation loop ran
            self.calibrate(self._training_clips())

    @torch.no_grad()
    def calibrate(self, loader: Any) -> float:
        """Fit everything a checkpoint scores with on the normal clips of ``loader`` (the
        training clips; re-iterable): BatchNorm statistics (``recalibrate_batchnorm``), the
        standardisation of the Mahalanobis vectors, the kNN bank and Mahalanobis statistics
        per id and domain, and the threshold on the clips' own held-out scores (kNN
        leave-one-out, Mahalanobis 5-fold cross-fit; nll in-sample). Returns the threshold."""
        model = self._require_model()
        was_training = self.training
        try:
            if self.hparams.recalibrate_batchnorm:  # float32, as it scores
                with torch.autocast(device_type=self.device.type, enabled=False):
                    recalibrate_norms(model, self._calibration_crops(loader))
            self.eval()
            self.vector_centre.zero_()  # raw vectors, standardised once all are in
            self.vector_scale.fill_(1.0)
            pieces, classes, domains = [], [], []
            for batch in self._on_device(loader):
                keep = (batch["target"] == 0) & (batch["class_index"] >= 0)
                if bool(keep.any()):
                    pieces.append(self._crop_outputs(batch["waveform"][keep]))
                    classes.append(self._id_classes(batch["class_index"][keep]))
                    domains.append(batch["domain"][keep].long().clamp(0, DOMAINS - 1))
            if not pieces:
                raise ValueError("no normal clips of a known machine id to calibrate on")
            outputs = CropOutputs(*(torch.cat(part) for part in zip(*pieces, strict=True)))
            outputs = outputs._replace(vectors=self._standardise(outputs.vectors))
            cls, dom = torch.cat(classes), torch.cat(domains)
            self._fit_banks(outputs, cls, dom)
            if self.score_name == "mahalanobis":
                scores = mahalanobis_cross_fit(outputs.vectors, cls, dom)
            else:
                exclude = torch.arange(len(cls), device=cls.device)
                scores = self._crop_scores(outputs, cls, exclude).mean(dim=1)
        finally:
            self.train(was_training)
        finite = scores[torch.isfinite(scores)]  # a clip alone in its id is left out
        if not finite.numel():
            finite = self._crop_scores(outputs, cls).mean(dim=1)
        value = fit_threshold(finite.double().cpu().numpy(), self.threshold_method,
                              self.threshold_quantile)  # fmt: skip
        self.threshold.fill_(value)
        return value

    def _calibration_crops(self, loader: Any) -> Any:
        for batch in self._on_device(loader):
            waveform = batch["waveform"][batch["target"] == 0].float()
            crops = sliding_crops(waveform, self.crop_samples, self.hop_samples).flatten(0, 1)
            for chunk in crops.split(CHUNK):
                raw = chunk if self._require_model().uses_waveform else None
                yield self.prepare_features(chunk), raw

    def _standardise(self, vectors: torch.Tensor) -> torch.Tensor:
        """With ``input_statistics``: fit ``vector_centre``/``vector_scale`` on the training
        crops' raw vectors ``(N, K, V)`` (every id) and return them standardised (their
        columns mix embedding units and log-mel units; Ledoit-Wolf shrinks towards a common
        variance). Without: the embeddings as they are."""
        if not self.hparams.input_statistics:
            return vectors
        rows = vectors.flatten(0, 1)
        self.vector_centre.copy_(rows.mean(dim=0))
        self.vector_scale.copy_(rows.std(dim=0).clamp_min(1e-6))
        return (vectors - self.vector_centre) / self.vector_scale

    def _fit_banks(self, outputs: CropOutputs, classes: torch.Tensor, domains: Any) -> None:
        """kNN bank (unit clip embeddings) and Mahalanobis statistics of the crop vectors."""
        embeddings, vectors = outputs.embeddings, outputs.vectors
        clip = F.normalize(F.normalize(embeddings, dim=-1).mean(dim=1), dim=-1)
        self.bank, self.bank_classes, self.bank_domains = clip, classes, domains
        k = vectors.shape[1]
        maha = MahalanobisScorer().fit(
            vectors.flatten(0, 1), classes.repeat_interleave(k), domains.repeat_interleave(k)
        )
        means, counts, precisions = maha.tensors(self.num_ids, DOMAINS)
        self.maha_means.copy_(means)
        self.maha_counts.copy_(counts)
        self.maha_precisions.copy_(precisions)
