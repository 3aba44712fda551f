"""Gaussian mixture density: score = negative log-likelihood of each embedding."""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

from aad.detectors.base import BaseDetector


class GMMDetector(BaseDetector):
    """``-GaussianMixture.score_samples``; needs at least ``n_components`` training clips.

    ``reg_covar`` is added to every covariance diagonal (on standardised data), which keeps
    the fit well defined with constant features or fewer clips than dimensions.
    """

    name = "gmm"

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        reg_covar: float = 1e-3,
        max_iter: int = 200,
        n_init: int = 1,
        **base: object,
    ) -> None:
        super().__init__(**base)
        if n_components < 1:
            raise ValueError(f"gmm: n_components must be >= 1, got {n_components}")
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init

    @property
    def min_train_samples(self) -> int:
        return max(2, self.n_components)

    def _minimum_reason(self) -> str:
        return f"n_components={self.n_components}"

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.model_ = GaussianMixture(
            n_components=self.n_components,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            random_state=self.random_state,
        ).fit(X)
        return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)
