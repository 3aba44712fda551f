"""scikit-learn's IsolationForest, OneClassSVM and LocalOutlierFactor behind the contract.

scikit-learn returns "higher = more normal" from ``score_samples``; each wrapper flips the
sign exactly once, in ``_score``: ``score = -score_samples(scaled X)``. scikit-learn's own
``contamination``/``offset_`` play no part: aad's threshold comes from the training scores.
"""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor
from sklearn.svm import OneClassSVM

from aad.detectors.base import BaseDetector
from aad.detectors.neighbours import Metric, NeighbourDetector
from aad.detectors.validation import (
    check_choice,
    check_float,
    check_fraction_or_count,
    check_int,
)
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE

KERNELS = ("linear", "poly", "rbf", "sigmoid")


class IsolationForestDetector(BaseDetector):
    """Isolation forest; score = -``IsolationForest.score_samples`` (mean path-length based)."""

    name = "isolation_forest"

    def __init__(
        self,
        n_estimators: int = 100,
        max_samples: int | float | str = "auto",
        max_features: int | float = 1.0,
        bootstrap: bool = False,
        n_jobs: int | None = None,
        *,
        scale: bool | str = True,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
        max_train_samples: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.max_features = max_features
        self.bootstrap = bootstrap
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
        check_int(self.name, "n_estimators", self.n_estimators, 1)
        check_fraction_or_count(self.name, "max_samples", self.max_samples, "auto")
        check_fraction_or_count(self.name, "max_features", self.max_features)
        if not isinstance(self.bootstrap, bool | np.bool_):
            raise ValueError(
                f"{self.name}: bootstrap must be True or False, got {self.bootstrap!r}"
            )

    def _describe_settings(self) -> list[str]:
        return [f"{self.n_estimators} trees"]

    def _fit(self, X: np.ndarray) -> np.ndarray:
        max_samples = self.max_samples
        if isinstance(max_samples, numbers.Integral) and max_samples > len(X):
            max_samples = len(X)  # scikit-learn would warn and do the same
        self.model_ = IsolationForest(
            n_estimators=self.n_estimators,
            max_samples=max_samples,
            max_features=self.max_features,
            bootstrap=self.bootstrap,
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
        *,
        scale: bool | str = True,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
        max_train_samples: int | None = 10_000,
        random_state: int | None = 0,
    ) -> None:
        self.kernel = kernel
        self.nu = nu
        self.gamma = gamma
        self.degree = degree
        self.coef0 = coef0
        self.tol = tol
        self.cache_size = cache_size
        super().__init__(
            scale=scale,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
            max_train_samples=max_train_samples,
            random_state=random_state,
        )

    def _check_params(self) -> None:
        super()._check_params()
        check_choice(self.name, "kernel", self.kernel, KERNELS)
        check_float(self.name, "nu", self.nu, 0.0, 1.0, low_open=True)
        if not (isinstance(self.gamma, str) and self.gamma in ("scale", "auto")):
            try:
                check_float(self.name, "gamma", self.gamma, 0.0, low_open=True)
            except ValueError:
                raise ValueError(
                    f"{self.name}: gamma must be 'scale', 'auto' or a float > 0, got {self.gamma!r}"
                ) from None
        check_int(self.name, "degree", self.degree, 0)
        check_float(self.name, "coef0", self.coef0, float("-inf"))
        check_float(self.name, "tol", self.tol, 0.0, low_open=True)
        check_float(self.name, "cache_size", self.cache_size, 0.0, low_open=True)

    def _describe_settings(self) -> list[str]:
        return [self.kernel, f"nu={self.nu:g}", f"gamma={self.gamma}"]

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

    Training scores are scikit-learn's ``-negative_outlier_factor_`` (each point's LOF without
    itself among its neighbours). Neighbour search is O(n_train x n_query) in high
    dimension: by default it fits on a seeded subsample of at most
    ``max_train_samples=20_000`` rows (``None`` = all).
    """

    name = "lof"

    def __init__(
        self,
        n_neighbors: int = 20,
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

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.model_ = LocalOutlierFactor(**self._search_params(len(X)), novelty=True).fit(X)
        return -self.model_.negative_outlier_factor_

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)
