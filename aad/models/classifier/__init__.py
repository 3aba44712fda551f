"""Self-supervised machine-id classifier (STgram-MFN style).

``lightning_model`` (:class:`MachineIDClassifier`, the aad model), ``torch_model`` (CNN +
ArcFace head), ``augment`` (crops, mixup, pseudo-classes) and ``scoring`` (class NLL, kNN
and Mahalanobis scores on the embeddings).
"""

from aad.models.classifier.augment import (
    PSEUDO_CLASS_NAMES,
    PseudoClasses,
    crop_starts,
    mixup,
    random_crops,
    sliding_crops,
)
from aad.models.classifier.lightning_model import MachineIDClassifier
from aad.models.classifier.scoring import KNNScorer, MahalanobisScorer, class_nll, clip_mean
from aad.models.classifier.torch_model import (
    ArcFaceHead,
    MachineClassifier,
    arcface_loss,
    recalibrate_batchnorm,
)

__all__ = [
    "PSEUDO_CLASS_NAMES",
    "ArcFaceHead",
    "KNNScorer",
    "MachineClassifier",
    "MachineIDClassifier",
    "MahalanobisScorer",
    "PseudoClasses",
    "arcface_loss",
    "class_nll",
    "clip_mean",
    "crop_starts",
    "mixup",
    "random_crops",
    "recalibrate_batchnorm",
    "sliding_crops",
]
