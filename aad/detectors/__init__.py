"""Classical anomaly detectors on clip embeddings, one PyOD-style contract."""

from aad.detectors.base import FORMAT_VERSION, BaseDetector, FeatureSignatureError
from aad.detectors.distance import KNNDetector, MahalanobisDetector
from aad.detectors.mixture import GMMDetector
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
    "FeatureSignatureError",
    "GMMDetector",
    "IsolationForestDetector",
    "KNNDetector",
    "LOFDetector",
    "MahalanobisDetector",
    "OneClassSVMDetector",
    "build_detector",
    "detector_from_spec",
]
