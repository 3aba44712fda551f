"""LightningModule of the machine-id classifier: trains on random crops, scores sliding crops.

A machine type's clips are told apart by machine id (or, with a single id, by self-supervised
pseudo-classes) with an ArcFace loss on short crops; a clip scores high when its crops look
unlike its own id (``nll``) or when its embedding is far from the normal training clips of
its id (``knn``, ``mahalanobis``; source and target domains both, the minimum of the two).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_only
from tqdm import tqdm

from aad.data.manifest import label_machine_id
from aad.models.base import AnomalyModule, NonFiniteLossError
from aad.models.classifier.augment import (
    PSEUDO_CLASS_NAMES,
    PseudoClasses,
    mixup,
    random_crops,
    sliding_crops,
)
from aad.models.classifier.calibration import CHUNK, DOMAINS, ClassifierCalibration
from aad.models.classifier.scoring import (
    CropOutputs,
    crop_vectors,
    id_log_mask,
    knn_shares,
    mahalanobis_shares,
    own_class_nll,
)
from aad.models.classifier.torch_model import MachineClassifier, arcface_loss
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE

CLASSIFIER_SCORES = ("nll", "knn", "mahalanobis")
LABEL_SCHEMES = ("auto", "ids", "attributes", "pseudo")
CLASSIFIER_FEATURES: dict[str, Any] = {
    "features": ["mel"],
    "mel": {"n_mels": 64},
    "stft": {"pad_mode": "reflect"},
}


class MachineIDClassifier(ClassifierCalibration, AnomalyModule):
    """Machine-id classifier (MobileFaceNet-style CNN, ArcFace) over 1 s log-mel crops.

    Args:
        features: feature config (default: 64 log-mels, n_fft 1024, hop 512, reflect pad).
        class_names: the type's training machine ids; ``None``: read from the datamodule in
            :meth:`setup` and stored in the hyperparameters (the checkpoint rebuilds the head).
        attribute_labels: the training clips' ids with their attributes
            (``ClipRecord.attribute_label``, e.g. ``section_00|spd_100``); read from the
            datamodule with ``class_names``.
        score: ``nll`` (-log p(own id), mean over crops), ``knn`` (cosine distance of the
            clip's mean unit embedding to the nearest training clip of its id) or
            ``mahalanobis`` (of the clip's mean crop vector, per id and domain, Ledoit-Wolf).
        label_scheme: ``ids``, ``attributes`` (each id with its attribute values: DCASE
            2022+ sections x attributes), ``pseudo`` (each id x 4 pseudo-classes: original,
            pitch-shift, time-stretch, mix) or ``auto``: attributes when they split some id
            of the training clips, else ids, else (a single id) pseudo. Scores are per id
            whatever the classes (``nll``: p(id) = the sum over its classes).
        crop_seconds, hop_seconds: crop length; hop between the crops that score a clip.
        crops_per_clip: random crops per training clip and step.
        embedding_dim, channels, waveform_branch, arcface_scale, arcface_margin: the network.
        mixup: mix crops and their labels while training.
        input_statistics: the Mahalanobis crop vector is the embedding with the crop's
            normalised log-mel mean and standard deviation over its frames appended (each
            column standardised on the training crops): what the network is trained to
            ignore. ``False``: the embedding alone.
        knn_k: neighbours averaged by ``knn``.
        recalibrate_batchnorm: re-estimate BatchNorm statistics on the training clips' crops
            before every calibration.
        Others: see :class:`~aad.models.base.AnomalyModule` (AdamW, one-cycle schedule).
    """

    uses_clip_features = False

    def __init__(
        self,
        features: dict[str, Any] | None = None,
        class_names: list[str] | None = None,
        attribute_labels: list[str] | None = None,
        score: str = "mahalanobis",
        label_scheme: str = "auto",
        crop_seconds: float = 1.0,
        hop_seconds: float = 0.5,
        crops_per_clip: int = 12,
        embedding_dim: int = 128,
        channels: tuple[int, int, int] = (32, 64, 128),
        waveform_branch: bool = False,
        arcface_scale: float = 30.0,
        arcface_margin: float = 0.5,
        mixup: bool = False,
        input_statistics: bool = True,
        knn_k: int = 1,
        recalibrate_batchnorm: bool = True,
        normalize: bool = True,
        learning_rate: float = 2e-3,
        weight_decay: float = 1e-4,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
    ) -> None:
        super().__init__(
            features=CLASSIFIER_FEATURES if features is None else features,
            normalize=normalize,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
        )
        if score not in CLASSIFIER_SCORES:
            raise ValueError(f"score must be one of {CLASSIFIER_SCORES}, got {score!r}")
        if label_scheme not in LABEL_SCHEMES:
            raise ValueError(f"label_scheme must be one of {LABEL_SCHEMES}, got {label_scheme!r}")
        if crop_seconds <= 0 or hop_seconds <= 0:
            raise ValueError("crop_seconds and hop_seconds must be > 0")
        if crops_per_clip < 1 or knn_k < 1:
            raise ValueError("crops_per_clip and knn_k must be >= 1")
        self.save_hyperparameters()
        self.score_name = score  # the base's pooling of crop scores: their mean
        self.crop_samples = int(round(crop_seconds * self.sample_rate))
        self.hop_samples = int(round(hop_seconds * self.sample_rate))
        self.pseudo = PseudoClasses()
        self.model: MachineClassifier | None = None
        self._crop_seed = 0
        if class_names is not None:
            self._build(list(class_names), attribute_labels)

    # ----------------------------------------------------------------- classes and head
    def _build(self, class_names: list[str], attribute_labels: list[str] | None = None) -> None:
        """Create the network and the score buffers for ``class_names`` (and their
        ``attribute_labels``)."""
        scheme, labels = self.hparams.label_scheme, list(attribute_labels or [])
        if scheme == "auto":
            split = len(labels) > len(class_names)
            scheme = "attributes" if split else "ids" if len(class_names) > 1 else "pseudo"
        if not class_names or (scheme == "ids" and len(class_names) < 2):
            raise ValueError(
                f"label_scheme 'ids' needs at least 2 machine ids, got {class_names}: use "
                "'pseudo' (or 'auto') for a type with a single id"
            )
        label_ids = [label_machine_id(label) for label in labels]
        if scheme == "attributes" and (
            len(labels) <= len(class_names) or sorted(set(label_ids)) != sorted(class_names)
        ):
            raise ValueError(
                f"label_scheme 'attributes' needs training clips whose attributes split an id "
                f"into several classes; got {labels or 'none'} for ids {class_names}: use "
                "'auto', 'ids' or 'pseudo'"
            )
        self.hparams.class_names = list(class_names)
        self.hparams.label_scheme = scheme
        self.hparams.attribute_labels = labels if scheme == "attributes" else None
        self.num_ids = len(class_names)
        self.per_id = self.pseudo.num_classes if scheme == "pseudo" else 1
        if scheme == "attributes":
            class_ids, read = [class_names.index(i) for i in label_ids], None
        else:  # pseudo: only the class "as recorded" (the first of its id's) reads as the id
            class_ids = [i for i in range(self.num_ids) for _ in range(self.per_id)]
            read = [c % self.per_id == 0 for c in range(len(class_ids))]
        self.register_buffer("id_log_mask", id_log_mask(self.num_ids, class_ids, read))
        hp = self.hparams
        first = self.feature_config.features[0]
        hop = int(self.features.params[first].hop_length)
        self.model = MachineClassifier(
            self.input_dim, len(class_ids), hp.embedding_dim, tuple(hp.channels),
            hp.waveform_branch, win_length=max(2 * hop, 16), hop_length=hop,
            arcface_scale=hp.arcface_scale, arcface_margin=hp.arcface_margin,
        )  # fmt: skip
        dim = hp.embedding_dim
        self.register_buffer("bank", torch.zeros(0, dim))  # unit clip embeddings (knn)
        self.register_buffer("bank_classes", torch.zeros(0, dtype=torch.long))
        self.register_buffer("bank_domains", torch.zeros(0, dtype=torch.long))
        width = dim + (2 * self.input_dim if hp.input_statistics else 0)  # Mahalanobis vectors
        self.register_buffer("vector_centre", torch.zeros(width))
        self.register_buffer("vector_scale", torch.ones(width))
        self.register_buffer("maha_means", torch.zeros(self.num_ids, DOMAINS, width))
        self.register_buffer("maha_counts", torch.zeros(self.num_ids, DOMAINS))
        self.register_buffer("maha_precisions", torch.zeros(self.num_ids, width, width))

    @property
    def label_scheme(self) -> str:
        """``ids``, ``attributes`` or ``pseudo`` once the classes are known (else ``auto``)."""
        return str(self.hparams.label_scheme)

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        names = list(datamodule.class_names) if hasattr(datamodule, "class_names") else None
        labels = getattr(datamodule, "attribute_labels", None)
        if self.model is None:
            if names is None:
                raise ValueError(
                    "MachineIDClassifier needs class_names: pass them, or fit with a datamodule "
                    "that has a class_names property (aad's MachineSoundDataModule)"
                )
            self._build(names, list(labels) if labels is not None else None)
            if self.label_scheme != "ids" and rank_zero_only.rank == 0:
                if self.label_scheme == "attributes":
                    what, classes = "id x attribute classes", self.hparams.attribute_labels
                else:
                    what, classes = "self-supervised pseudo-classes", list(PSEUDO_CLASS_NAMES)
                tqdm.write(f"[aad] {len(names)} machine id(s) {names}: training on the "
                           f"{what} {classes}")  # fmt: skip
        elif stage == "fit" and names is not None and names != self.hparams.class_names:
            raise ValueError(
                f"this model's classes {self.hparams.class_names} differ from the data's "
                f"training machine ids {names}"
            )

    def _require_model(self) -> MachineClassifier:
        if self.model is None:
            raise RuntimeError("the classes are not known yet: pass class_names or fit first")
        return self.model

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "id_log_mask" not in state_dict and "id_log_mask" in self._buffers:
            state_dict[prefix + "id_log_mask"] = self._buffers["id_log_mask"]  # before attributes
        means = state_dict.get(prefix + "maha_means")
        if means is not None and prefix + "vector_centre" not in state_dict:
            # written before input_statistics: Mahalanobis on the embedding alone
            self.hparams.input_statistics = False
            state_dict[prefix + "vector_centre"] = torch.zeros(means.shape[-1])
            state_dict[prefix + "vector_scale"] = torch.ones(means.shape[-1])
        sized = ("bank", "bank_classes", "bank_domains")  # by the data
        for name in (*sized, "vector_centre", "vector_scale", "maha_means", "maha_precisions"):
            incoming = state_dict.get(prefix + name)
            if incoming is not None and name in self._buffers:
                self._buffers[name] = torch.empty_like(incoming, device=self.device)
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _id_classes(self, class_index: torch.Tensor) -> torch.Tensor:
        """Batch ``class_index`` -> id index (-1 unknown; with a single id, unknown -> it)."""
        classes = class_index.to(self.device).long()
        return classes.clamp_min(0) if self.num_ids == 1 else classes

    # ----------------------------------------------------------------- crops -> network
    def _embed(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw crops ``(N, L)`` -> embeddings ``(N, E)`` and Mahalanobis vectors ``(N, V)``
        (features normalised on the device)."""
        model = self._require_model()
        features = self.prepare_features(crops)
        embeddings = model(features, crops if model.uses_waveform else None)
        vectors = crop_vectors(embeddings, features, self.vector_centre, self.vector_scale,
                               bool(self.hparams.input_statistics))  # fmt: skip
        return embeddings, vectors

    def _crop_outputs(self, waveform: torch.Tensor) -> CropOutputs:
        """Sliding crops of clips ``(B, S)`` -> :class:`CropOutputs` (autocast off)."""
        model = self._require_model()
        crops = sliding_crops(waveform.float(), self.crop_samples, self.hop_samples)
        b, k = crops.shape[:2]
        with torch.autocast(device_type=self.device.type, enabled=False):
            pieces = [self._embed(c) for c in crops.flatten(0, 1).split(CHUNK)]
            embeddings = torch.cat([e for e, _ in pieces]).float()
            vectors = torch.cat([v for _, v in pieces]).float()
            logits = model.logits(embeddings)
        return CropOutputs(embeddings.view(b, k, -1), logits.view(b, k, -1), vectors.view(b, k, -1))

    def _crop_scores(
        self, outputs: CropOutputs, classes: torch.Tensor, exclude: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Per-crop scores ``(B, K)`` whose mean over K is the clip score."""
        if self.score_name == "nll":
            return own_class_nll(outputs.logits, classes, self.id_log_mask)
        if self.score_name == "knn":
            if not len(self.bank):
                raise RuntimeError("knn score used before calibrate() filled the embedding bank")
            return knn_shares(outputs.embeddings, classes, self.bank, self.bank_classes,
                              self.bank_domains, int(self.hparams.knn_k), exclude)  # fmt: skip
        if not bool((self.maha_counts > 0).any()):
            raise RuntimeError("mahalanobis score used before calibrate() fitted its statistics")
        return mahalanobis_shares(outputs.vectors, classes, self.maha_means, self.maha_counts,
                                  self.maha_precisions)  # fmt: skip

    def frame_scores(self, features: Any, batch: dict[str, Any]) -> torch.Tensor:
        """Per-crop scores ``(B, K)`` of the clips' sliding crops (their mean = clip score); a
        batch without ``class_index`` (a stream, loose PCM) is scored against the nearest id."""
        waveform = batch["waveform"].to(self.device)
        classes = batch.get("class_index")
        if classes is None:
            classes = torch.full((len(waveform),), -1, dtype=torch.long)
        return self._crop_scores(self._crop_outputs(waveform), self._id_classes(classes))

    def frame_times(self, num_frames: int) -> np.ndarray:
        """Centre (s) of each scored crop (on the hop grid; the last crop ends at the clip's
        end, so its time is exact when the clip minus one crop is a whole number of hops)."""
        return (self.crop_samples / 2 + self.hop_samples * np.arange(num_frames)) / self.sample_rate

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Clip embedding ``(B, E)``: mean unit embedding of crop-long windows of normalised
        features ``(B, T, D)`` every hop (log-mel input only, no waveform branch)."""
        model = self._require_model()
        if model.uses_waveform:
            raise NotImplementedError("encode(features) needs raw crops with waveform_branch")
        hop = int(self.features.params[self.feature_config.features[0]].hop_length)
        size, step = max(self.crop_samples // hop, 1), max(self.hop_samples // hop, 1)
        size = min(size, features.shape[1])
        windows = features.unfold(1, size, step).transpose(2, 3)  # (B, W, size, D)
        embeddings = model(windows.flatten(0, 1).float())
        return F.normalize(embeddings, dim=-1).view(*windows.shape[:2], -1).mean(dim=1)

    # ----------------------------------------------------------------- training
    def _training_labels(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Which clips of a batch train (normal, of a known class) and the class of each:
        its id, or with ``attributes`` its id with its attribute values."""
        attributes = self.label_scheme == "attributes"
        index = batch["label_index"] if attributes else batch["class_index"]
        keep = (batch["target"] == 0) & (index >= 0)
        labels = index[keep].to(self.device).long() if attributes else self._id_classes(index[keep])
        return keep, labels

    def _labelled_crops(
        self, waveform: torch.Tensor, classes: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips ``(B, S)`` of classes ``classes`` (:meth:`_training_labels`) -> random crops
        ``(N, L)`` and their class labels (pseudo: each id's 4 classes)."""
        k = int(self.hparams.crops_per_clip)
        if self.per_id > 1:
            crops, pseudo = self.pseudo(waveform.float(), self.crop_samples, k, generator)
            labels = classes[:, None] * self.per_id + pseudo
        else:
            crops = random_crops(waveform.float(), self.crop_samples, k, generator)
            labels = classes[:, None].expand(-1, k)
        return crops.flatten(0, 1), labels.flatten()

    def _loss(self, crops: torch.Tensor, labels: torch.Tensor, generator: Any) -> torch.Tensor:
        model = self._require_model()
        features = self.prepare_features(crops)
        raw = crops if model.uses_waveform else None
        partner = lam = None
        if self.hparams.mixup:
            mixed, partner, lam = mixup([features] if raw is None else [features, raw], generator)
            features, raw = mixed[0], (mixed[1] if raw is not None else None)
        return arcface_loss(model, model(features, raw), labels, partner, lam)

    def on_fit_start(self) -> None:
        super().on_fit_start()  # the normaliser, on the training clips
        self._crop_seed = int(torch.randint(0, 2**31 - 1, (1,)))  # seeded by seed_everything

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        keep, classes = self._training_labels(batch)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(self._crop_seed + self.global_step)
        crops, labels = self._labelled_crops(batch["waveform"][keep], classes, generator)
        loss = self._loss(crops, labels, generator)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"training loss is {loss.item()} at epoch {self.current_epoch}, global step "
                f"{self.global_step}, batch {batch_idx}; stopping. The last good checkpoint is "
                "the one saved before this step (last.ckpt); lower model.learning_rate"
            )
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True,
                 batch_size=int(keep.sum()))  # fmt: skip
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """``val/loss``: the ArcFace loss on the validation clips' sliding crops (pseudo
        classes: on crops drawn with a fixed seed per batch, the same every epoch)."""
        keep, classes = self._training_labels(batch)
        if not bool(keep.any()):
            return
        waveform = batch["waveform"][keep]
        if self.per_id > 1:
            generator = torch.Generator(device=self.device).manual_seed(batch_idx)
            crops, labels = self._labelled_crops(waveform, classes, generator)
        else:
            crops = sliding_crops(waveform.float(), self.crop_samples, self.hop_samples)
            labels = classes[:, None].expand(-1, crops.shape[1]).flatten()
            crops = crops.flatten(0, 1)
        model = self._require_model()
        loss = arcface_loss(model, self._embed(crops)[0], labels)
        self.log("val/loss", loss, prog_bar=True, batch_size=int(keep.sum()), sync_dist=True)

    def configure_optimizers(self) -> Any:
        optimiser = torch.optim.AdamW(
            self.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay
        )
        steps = self.trainer.estimated_stepping_batches if self._trainer is not None else math.inf
        if not math.isfinite(steps):  # no trainer, or no epoch/step limit: constant rate
            return optimiser
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, self.learning_rate, int(steps))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
