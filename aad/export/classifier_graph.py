"""The machine-id classifier as one exportable ``nn.Module``: PCM -> sliding crops -> log-mel
-> CNN embeddings -> per-crop score shares, for ONE machine id baked in at export time (or the
nearest id when none is given, as ``predict`` scores a clip of unknown id).

The steps are ``MachineIDClassifier.frame_scores``'s own functions (``crop_windows``,
``own_class_nll``, ``pair_mahalanobis_shares``, all written in tensor ops whose sizes follow
the input); only the fitted statistics' pairs are taken out of the buffers once, here.
``knn`` (a bank of every training clip's embedding) is not exported.
"""

from __future__ import annotations

import torch
from torch import nn

from aad.export.graph import FrontEnd, NotExportableError
from aad.models.base import AnomalyModule
from aad.models.classifier.augment import crop_windows
from aad.models.classifier.scoring import (
    crop_vectors,
    mahalanobis_pairs,
    own_class_nll,
    pair_mahalanobis_shares,
)

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
    """``(B, S)`` float32 PCM, ``S >= crop`` -> ``(clip_scores (B,), crop_scores (B, K))``;
    ``min_samples``, ``frame_step``, ``frame_offset`` and ``reference_batch`` as
    :class:`~aad.export.graph.ScoringGraph` (one score per crop, centred on it)."""

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
        self.min_samples = max(self.crop, module.features.min_samples())
        self.frame_step, self.frame_offset = float(self.hop), self.crop / 2
        self.front_end = FrontEnd(module.features)
        self.normalize = bool(module.normalize)
        self.register_buffer("mean", module.normalizer.mean.detach().float().clone())
        self.register_buffer("std", module.normalizer.std.detach().float().clone())
        self.model = module.model
        self.uses_waveform = bool(self.model.uses_waveform)
        self.register_buffer("id_log_mask", module.id_log_mask.detach().float().clone())
        self.class_index = classifier_class(module, machine_id)
        if score == "mahalanobis":
            if not bool((module.maha_counts > 0).any()):
                raise NotExportableError("the mahalanobis score's statistics were never fitted")
            means, precisions, classes = mahalanobis_pairs(
                module.maha_means, module.maha_counts, module.maha_precisions
            )
            self.input_statistics = bool(module.hparams.input_statistics)
            self.register_buffer("vector_centre", module.vector_centre.detach().float().clone())
            self.register_buffer("vector_scale", module.vector_scale.detach().float().clone())
            self.register_buffer("pair_means", means.clone())
            self.register_buffer("pair_precisions", precisions.clone())
            self.pair_classes = classes

    def reference_batch(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """The clips as scored against this file's id (``class_index`` -1: the nearest)."""
        index = torch.full((len(waveform),), self.class_index, dtype=torch.long)
        return {"waveform": waveform, "class_index": index}

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        windows = crop_windows(waveform, self.crop, self.hop)
        batch, count = windows.shape[:2]
        crops = windows.flatten(0, 1)
        features = self.front_end(crops)  # as MachineIDClassifier._embed
        if self.normalize:
            features = (features - self.mean) / self.std
        embeddings = self.model(features, crops if self.uses_waveform else None).float()
        classes = torch.zeros_like(waveform[:, 0], dtype=torch.long) + self.class_index
        if self.score_name == "nll":
            logits = self.model.logits(embeddings).reshape(batch, count, -1)
            crop_scores = own_class_nll(logits, classes, self.id_log_mask)
        else:
            vectors = crop_vectors(embeddings, features, self.vector_centre, self.vector_scale,
                                   self.input_statistics)  # fmt: skip
            crop_scores = pair_mahalanobis_shares(
                vectors.reshape(batch, count, -1), classes, self.pair_means,
                self.pair_precisions, self.pair_classes,
            )  # fmt: skip
        return crop_scores.mean(dim=1), crop_scores
