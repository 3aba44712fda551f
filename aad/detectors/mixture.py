"""Gaussian mixture density: score = negative log-likelihood of each embedding."""

from __future__ import annotations

import numpy as np
from sklearn.mixture import GaussianMixture

from aad.detectors.base import BaseDetector
from aad.detectors.validation import check_choice, check_float, check_int
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


class GMMDetector(BaseDetector):
    """``-GaussianMixture.score_samples``.

    ``reg_covar`` is added to every covariance diagonal (on scaled data), which keeps the fit
    well defined with constant features or fewer clips than dimensions. With fewer training
    clips than ``n_components`` the mixture is clamped to one component per clip (one
    :class:`~aad.detectors.base.SmallTrainingSetWarning`); the value used is
    ``n_components_``.
    """

    name = "gmm"

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        reg_covar: float = 1e-3,
        max_iter: int = 200,
        n_init: int = 1,
        *,
        scale: bool | str = True,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
        max_train_samples: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        super().__init__(
            scale=scale,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
            max_train_samples=max_train_samples,
            random_state=random_state,
        )

    def _check_params(self) -> None:
        super()._check_params()
        check_int(self.name, "n_components", self.n_components, 1)
        check_choice(self.name, "covariance_type", self.covariance_type, COVARIANCE_TYPES)
        check_float(self.name, "reg_covar", self.reg_covar, 0.0)
        check_int(self.name, "max_iter", self.max_iter, 1)
        check_int(self.name, "n_init", self.n_init, 1)

    def _describe_settings(self) -> list[str]:
        used = getattr(self, "n_components_", None)
        if used is not None and used != self.n_components:
            components = f"{used} of {self.n_components} components requested"
        else:
            components = f"{self.n_components} component{'s' if self.n_components > 1 else ''}"
        return [components, self.covariance_type]

    def _fit(self, X: np.ndarray) -> np.ndarray:
        self.n_components_ = self._clamped("n_components", self.n_components, len(X))
        self.model_ = GaussianMixture(
            n_components=self.n_components_,
            covariance_type=self.covariance_type,
            reg_covar=self.reg_covar,
            max_iter=self.max_iter,
            n_init=self.n_init,
            random_state=self.random_state,
        ).fit(X)
        return self._score(X)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return -self.model_.score_samples(X)
