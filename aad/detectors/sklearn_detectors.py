"""scikit-learn's IsolationForest, OneClassSVM and LocalOutlierFactor behind the contract.

scikit-learn returns "higher = more normal" from ``score_samples``; each wrapper flips the
sign exactly once, in ``_score``: ``score = -score_samples(standardised X)``.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from aad.detectors.base import BaseDetector
from aad.detectors.neighbours import NeighbourDetector


class IsolationForestDetector(BaseDetector):
    """Isolation forest; score = -``IsolationForest.score_samples`` (mean path-length based)."""

    name = "isolation_forest"

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        max_features: float = 1.0,
        bootstrap: bool = False,
        n_jobs: int | None = None,
        **base: object,
    ) -> None:
        super().__init__(**base)
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs

    @property
    def min_train_samples(self) -> int:
        return 2

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=self.max_samples,
            max_features=self.max_features,
            bootstrap=self.bootstrap,
            contamination=self.contamination,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        ).fit(X)
        return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)


class OneClassSVMDetector(BaseDetector):
    """One-class SVM; score = -``OneClassSVM.score_samples``.

    Its kernel matrix is O(n^2): by default it fits on a seeded subsample of at most
    ``max_train_samples=10_000`` rows.
    """

    name = "ocsvm"

    def __init__(
        self,
        kernel: str = "rbf",
        nu: float = 0.1,
        gamma: str | float = "scale",
        degree: int = 3,
        coef0: float = 0.0,
        tol: float = 1e-3,
        cache_size: float = 500.0,
        max_train_samples: int | None = 10_000,
        **base: object,
    ) -> None:
        super().__init__(max_train_samples=max_train_samples, **base)
        if not 0.0 < nu <= 1.0:
            raise ValueError(f"ocsvm: nu must be in (0, 1], got {nu}")
        self.kernel = kernel
        self.nu = nu
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.tol = tol
        self.cache_size = cache_size

    @property
    def min_train_samples(self) -> int:
        return 2

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.model_ = OneClassSVM(
            kernel=self.kernel,
            nu=self.nu,
            gamma=self.gamma,
            degree=self.degree,
            coef0=self.coef0,
            tol=self.tol,
            cache_size=self.cache_size,
        ).fit(X)
        return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)


class LOFDetector(NeighbourDetector):
    """Local outlier factor with ``novelty=True``; score = LOF = -``score_samples``.

    Training scores are sklearn's ``-negative_outlier_factor_`` (each point's LOF without
    itself among its neighbours). Needs at least ``n_neighbors + 1`` training clips.
    Neighbour search is O(n_train x n_query) in high dimension: by default it fits on a
    seeded subsample of at most ``max_train_samples=20_000`` rows (``None`` = all).
    """

    name = "lof"

    def __init__(self, n_neighbors: int = 20, **params: object) -> None:
        super().__init__(n_neighbors=n_neighbors, **params)

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.model_ = LocalOutlierFactor(
            **self._search_params(), contamination=self.contamination, novelty=True
        ).fit(X)
        return -self.model_.negative_outlier_factor_

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)
