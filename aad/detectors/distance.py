"""Distance detectors: k-nearest-neighbour distance and Mahalanobis distance."""

from __future__ import annotations

import numpy as np
from sklearn.covariance import EmpiricalCovariance, LedoitWolf, ShrunkCovariance
from sklearn.neighbors import NearestNeighbors

from aad.detectors.base import BaseDetector
from aad.detectors.neighbours import Metric, NeighbourDetector
from aad.detectors.validation import check_choice, check_float
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE

KNN_METHODS = ("mean", "max", "median")
COVARIANCE_ESTIMATORS = ("ledoit_wolf", "empirical", "shrunk")


class KNNDetector(NeighbourDetector):
    """Distance to the k nearest training embeddings, reduced by ``method`` (mean/max/median).

    Training scores leave each point out of its own neighbours (``kneighbors()`` without
    ``X``). Neighbour search is scikit-learn's ``NearestNeighbors`` (``algorithm="auto"``: a
    ball/KD tree in low dimension, chunked brute force in high dimension). Time is
    O(n_train x n_query): by default it fits on a seeded subsample of at most
    ``max_train_samples=20_000`` rows (``None`` = all).
    """

    name = "knn"

    def __init__(
        self,
        n_neighbors: int = 5,
        method: str = "mean",
        algorithm: str = "auto",
        leaf_size: int = 30,
        metric: Metric = "minkowski",
        p: float = 2.0,
        n_jobs: int | None = None,
        *,
        scale: bool | str = True,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
        max_train_samples: int | None = 20_000,
        random_state: int | None = 0,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.method = method
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.n_jobs = n_jobs
        super().__init__(
            scale=scale,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
            max_train_samples=max_train_samples,
            random_state=random_state,
        )

    def _check_params(self) -> None:
        super()._check_params()
        check_choice(self.name, "method", self.method, KNN_METHODS)

    def _describe_settings(self) -> list[str]:
        settings = super()._describe_settings()
        return settings if self.method == "mean" else [*settings, self.method]

    def _reduce(self, distances: np.ndarray) -> np.ndarray:
        return {"mean": np.mean, "max": np.max, "median": np.median}[self.method](distances, axis=1)

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.model_ = NearestNeighbors(**self._search_params(len(X))).fit(X)
        # kneighbors() without X excludes each training point from its own neighbours.
        distances, _ = self.model_.kneighbors()
        return self._reduce(distances)

    def _score(self, X: np.ndarray) -> np.ndarray:
        distances, _ = self.model_.kneighbors(X)
        return self._reduce(distances)


class MahalanobisDetector(BaseDetector):
    """Squared Mahalanobis distance to the training mean.

    ``estimator``: ``ledoit_wolf`` (shrinkage chosen analytically), ``shrunk`` (fixed
    ``shrinkage`` in [0, 1]) or ``empirical`` (pseudo-inverse of the sample covariance).
    """

    name = "mahalanobis"
    min_train_reason = "a covariance needs two points"

    def __init__(
        self,
        estimator: str = "ledoit_wolf",
        shrinkage: float = 0.1,
        *,
        scale: bool | str = True,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
        max_train_samples: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.estimator = estimator
        self.shrinkage = shrinkage
        super().__init__(
            scale=scale,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
            max_train_samples=max_train_samples,
            random_state=random_state,
        )

    def _check_params(self) -> None:
        super()._check_params()
        check_choice(self.name, "estimator", self.estimator, COVARIANCE_ESTIMATORS)
        check_float(self.name, "shrinkage", self.shrinkage, 0.0, 1.0)

    def _describe_settings(self) -> list[str]:
        if self.estimator == "shrunk":
            return [f"shrunk {self.shrinkage:g}"]
        return [self.estimator]

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
