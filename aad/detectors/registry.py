"""Detectors by name: ``build_detector("lof", n_neighbors=10)`` or from a YAML spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aad.detectors.base import BaseDetector
from aad.detectors.distance import KNNDetector, MahalanobisDetector
from aad.detectors.mixture import GMMDetector
from aad.detectors.persistence import resolve_detector_class
from aad.detectors.pyod_detector import PyODDetector
from aad.detectors.sklearn_detectors import (
    IsolationForestDetector,
    LOFDetector,
    OneClassSVMDetector,
)

DETECTORS: dict[str, type[BaseDetector]] = {
    "isolation_forest": IsolationForestDetector,
    "ocsvm": OneClassSVMDetector,
    "lof": LOFDetector,
    "knn": KNNDetector,
    "mahalanobis": MahalanobisDetector,
    "gmm": GMMDetector,
    "pyod": PyODDetector,
}
ALIASES = {
    "iforest": "isolation_forest",
    "if": "isolation_forest",
    "one_class_svm": "ocsvm",
    "oneclasssvm": "ocsvm",
    "local_outlier_factor": "lof",
    "gaussian_mixture": "gmm",
}


def build_detector(name: str, **params: Any) -> BaseDetector:
    """A detector by registry name (or alias) with its constructor parameters.

    >>> build_detector("knn", n_neighbors=3).n_neighbors
    3
    """
    key = ALIASES.get(name.lower(), name.lower())
    if key not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {sorted(DETECTORS)}")
    return DETECTORS[key](**params)


def detector_from_spec(spec: Mapping[str, Any]) -> BaseDetector:
    """Build from ``{name, params}`` or ``{class_path, init_args}`` (Lightning CLI style).

    A ``class_path`` must name a subclass of aad's ``BaseDetector``; it is checked after the
    import and before the class is called.
    """
    if "class_path" in spec:
        cls = resolve_detector_class(str(spec["class_path"]))  # checked before it is called
        return cls(**dict(spec.get("init_args") or {}))
    if "name" in spec:
        return build_detector(str(spec["name"]), **dict(spec.get("params") or {}))
    raise ValueError(f"detector spec needs 'name' (+ 'params') or 'class_path': {dict(spec)}")
