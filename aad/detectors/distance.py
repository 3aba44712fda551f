"""Distance detectors: k-nearest-neighbour distance and Mahalanobis distance."""

from __future__ import annotations

import numpy as np
from sklearn.covariance import EmpiricalCovariance, LedoitWolf, ShrunkCovariance
from sklearn.neighbors import NearestNeighbors

from aad.detectors.base import BaseDetector
from aad.detectors.neighbours import NeighbourDetector

KNN_METHODS = ("mean", "max", "median")
COVARIANCE_ESTIMATORS = ("ledoit_wolf", "empirical", "shrunk")


class KNNDetector(NeighbourDetector):
    """Distance to the k nearest training embeddings, reduced by ``method`` (mean/max/median).

    Training scores leave each point out of its own neighbours (query k + 1, drop self),
    so it needs at least ``n_neighbors + 1`` training clips. Neighbour search is
    scikit-learn's ``NearestNeighbors`` (``algorithm="auto"``: a ball/KD tree in low
    dimension, chunked brute force in high dimension; memory stays bounded either way).
    Time is O(n_train x n_query): by default it fits on a seeded subsample of at most
    ``max_train_samples=20_000`` rows (``None`` = all).
    """

    name = "knn"

    def __init__(
        self,
        n_neighbors: int = 5,
        method: str = "mean",
        **params: object,
    ) -> None:
        super().__init__(n_neighbors=n_neighbors, **params)
        if method not in KNN_METHODS:
            raise ValueError(f"knn: method must be one of {KNN_METHODS}, got {method!r}")
        self.method = method

    def _reduce(self, distances: np.ndarray) -> np.ndarray:
        return {"mean": np.mean, "max": np.max, "median": np.median}[self.method](distances, axis=1)

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.model_ = NearestNeighbors(**self._search_params()).fit(X)
        # kneighbors() without X excludes each training point from its own neighbours.
        distances, _ = self.model_.kneighbors()
        return self._reduce(distances)

    def _score(self, X: np.ndarray) -> np.ndarray:
        distances, _ = self.model_.kneighbors(X)
        return self._reduce(distances)


class MahalanobisDetector(BaseDetector):
    """Squared Mahalanobis distance to the training mean.

    ``estimator``: ``ledoit_wolf`` (shrinkage chosen analytically), ``shrunk`` (fixed
    ``shrinkage``) or ``empirical`` (pseudo-inverse of the sample covariance). Needs >= 2 clips.
    """

    name = "mahalanobis"

    def __init__(
        self, estimator: str = "ledoit_wolf", shrinkage: float = 0.1, **base: object
    ) -> None:
        super().__init__(**base)
        if estimator not in COVARIANCE_ESTIMATORS:
            raise ValueError(
                f"mahalanobis: estimator must be one of {COVARIANCE_ESTIMATORS}, got {estimator!r}"
            )
        self.estimator = estimator
        self.shrinkage = shrinkage

    @property
    def min_train_samples(self) -> int:
        return 2

    def _minimum_reason(self) -> str:
        return "a covariance needs two points"

    def _fit(self, X: np.ndarray) -> np.ndarray:
        if self.estimator == "ledoit_wolf":
            model = LedoitWolf()
        elif self.estimator == "shrunk":
            model = ShrunkCovariance(shrinkage=self.shrinkage)
        else:
            model = EmpiricalCovariance()
        self.model_ = model.fit(X)
        return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.model_.mahalanobis(X)
