"""Classical anomaly detectors on clip embeddings, one PyOD-style, scikit-learn compatible
contract (:class:`BaseDetector`)."""

from aad.detectors.base import (
    BaseDetector,
    FeatureSignatureError,
    SmallTrainingSetWarning,
)
from aad.detectors.distance import KNNDetector, MahalanobisDetector
from aad.detectors.mixture import GMMDetector
from aad.detectors.persistence import (
    FORMAT_VERSION,
    DetectorFileError,
    load_detector,
    save_detector,
)
from aad.detectors.pyod_detector import PyODDetector
from aad.detectors.registry import DETECTORS, build_detector, detector_from_spec
from aad.detectors.sklearn_detectors import (
    IsolationForestDetector,
    LOFDetector,
    OneClassSVMDetector,
)

__all__ = [
    "DETECTORS",
    "FORMAT_VERSION",
    "BaseDetector",
    "DetectorFileError",
    "FeatureSignatureError",
    "GMMDetector",
    "IsolationForestDetector",
    "KNNDetector",
    "LOFDetector",
    "MahalanobisDetector",
    "OneClassSVMDetector",
    "PyODDetector",
    "SmallTrainingSetWarning",
    "build_detector",
    "detector_from_spec",
    "load_detector",
    "save_detector",
]
