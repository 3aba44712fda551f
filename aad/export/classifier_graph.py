"""The machine-id classifier as one exportable ``nn.Module``: PCM -> sliding crops -> log-mel
-> CNN embeddings -> per-crop score shares, for ONE machine id baked in at export time (or the
nearest id when none is given, as ``predict`` scores a clip of unknown id).

Same steps as ``MachineIDClassifier.frame_scores`` (the function ``evaluate.py`` uses), in
tensor ops whose sizes follow the input: crops every ``hop`` samples, the last one ending at
the clip's end; ``mahalanobis`` shares ``(e_k - mu)^T P (m - mu)`` against the nearest fitted
(id, domain) mean; ``nll`` ``-log p(id)`` per crop. ``knn`` (a bank of every training clip's
embedding) is not exported.
"""

from __future__ import annotations

import torch
from torch import nn

from aad.export.graph import FrontEnd, NotExportableError
from aad.models.base import AnomalyModule

EXPORTABLE_SCORES = ("mahalanobis", "nll")


def classifier_class(module: AnomalyModule, machine_id: str | None) -> int:
    """Index of ``machine_id`` among the classifier's ids; -1 (nearest id) for None."""
    names = list(module.hparams.class_names)
    if machine_id is None:
        return 0 if len(names) == 1 else -1
    if machine_id not in names:
        raise NotExportableError(
            f"machine id {machine_id!r} is not one the classifier was trained on: {names}"
        )
    return names.index(machine_id)


class ClassifierGraph(nn.Module):
    """``(B, S)`` float32 PCM, ``S >= crop`` -> ``(clip_scores (B,), crop_scores (B, K))``."""

    def __init__(self, module: AnomalyModule, machine_id: str | None = None) -> None:
        super().__init__()
        score = module.score_name
        if score not in EXPORTABLE_SCORES:
            raise NotExportableError(
                f"the classifier's {score!r} score is not exportable (it searches a bank of "
                f"every training embedding); export with score {' or '.join(EXPORTABLE_SCORES)}"
            )
        if module.normalize and not module.normalizer.fitted:
            raise NotExportableError("the checkpoint's feature normaliser was never fitted")
        self.score_name = score
        self.crop, self.hop = int(module.crop_samples), int(module.hop_samples)
        self.front_end = FrontEnd(module.features)
        self.normalize = bool(module.normalize)
        self.register_buffer("mean", module.normalizer.mean.detach().float().clone())
        self.register_buffer("std", module.normalizer.std.detach().float().clone())
        self.model = module.model
        self.uses_waveform = bool(self.model.uses_waveform)
        self.per_id = int(module.per_id)
        self.class_index = classifier_class(module, machine_id)
        if score == "mahalanobis":
            counts = module.maha_counts
            if not bool((counts > 0).any()):
                raise NotExportableError("the mahalanobis score's statistics were never fitted")
            pairs = [
                (c, d)
                for c, d in torch.nonzero(counts > 0).tolist()
                if self.class_index < 0 or c == self.class_index
            ]
            means = torch.stack([module.maha_means[c, d] for c, d in pairs])
            precisions = torch.stack([module.maha_precisions[c] for c, _ in pairs])
            self.register_buffer("maha_means", means.double().clone())
            self.register_buffer("maha_precisions", precisions.double().clone())

    def crops(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(B, S)`` -> ``(B, K, crop)``: every hop, the last crop ending at the clip's end."""
        span = waveform.shape[1] - self.crop
        count = (span + self.hop - 1) // self.hop + 1
        starts = (torch.arange(count, device=waveform.device) * self.hop).clamp(max=span)
        index = starts[:, None] + torch.arange(self.crop, device=waveform.device)
        return waveform[:, index]

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        """``(N, crop)`` -> ``(N, E)`` as ``MachineIDClassifier._embed``."""
        features = self.front_end(crops)
        if self.normalize:
            features = (features - self.mean) / self.std
        return self.model(features, crops if self.uses_waveform else None)

    def shares(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``(B, K, E)`` -> ``(B, K)`` per-crop scores whose mean is the clip score."""
        if self.score_name == "nll":
            logits = self.model.logits(embeddings.flatten(0, 1).float())
            log_prob = torch.log_softmax(logits, dim=-1)[:, :: self.per_id]
            log_prob = log_prob.reshape(*embeddings.shape[:2], -1)
            if self.class_index >= 0:
                return -log_prob[:, :, self.class_index]
            return -log_prob.max(dim=2).values
        x = embeddings.double()
        clip = x.mean(dim=1)
        distances, shares = [], []
        for index in range(self.maha_means.shape[0]):
            mean = self.maha_means[index]
            weighted = (clip - mean) @ self.maha_precisions[index]  # (B, E)
            distances.append((weighted * (clip - mean)).sum(dim=1))
            shares.append(((x - mean) * weighted[:, None, :]).sum(dim=2))
        nearest = torch.stack(distances, dim=1).argmin(dim=1)  # first minimum, as the module
        stacked = torch.stack(shares, dim=1)  # (B, P, K)
        index = nearest[:, None, None].expand(-1, 1, stacked.shape[2])
        return stacked.gather(1, index).squeeze(1).float()

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        crops = self.crops(waveform)
        batch, count = crops.shape[:2]
        embeddings = self.embed(crops.flatten(0, 1)).float().reshape(batch, count, -1)
        crop_scores = self.shares(embeddings)
        return crop_scores.mean(dim=1), crop_scores
