"""The one detector contract (PyOD style, scikit-learn compatible) shared by every method.

``fit(X)`` on normal training embeddings; ``decision_function(X)`` returns one score per
row, higher = more anomalous; ``threshold_`` comes from the training scores by the shared
rule of :mod:`aad.thresholds` (the same one the models use); ``predict(X)`` is
``score > threshold_``. A ``feature_signature`` given at fit is stored as
``feature_signature_`` and checked when scoring, so embeddings from another feature
configuration are refused. ``save``/``load`` write a pickle-free ``.npz``
(:mod:`aad.detectors.persistence`).
"""

from __future__ import annotations

import numbers
import warnings
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from aad.detectors.validation import check_int
from aad.thresholds import (
    DEFAULT_METHOD,
    DEFAULT_QUANTILE,
    check_threshold_settings,
    decide,
    fit_threshold,
)

SCALERS = ("standard", "minmax", "none")
MINMAX_RANGE = (-5.0, 5.0)  # the Exploring-AAD study's MinMaxScaler(-5, 5)


class FeatureSignatureError(ValueError):
    """Embeddings scored with a feature configuration other than the one fitted on."""


class SmallTrainingSetWarning(UserWarning):
    """A setting was reduced to fit a small training set (e.g. ``n_neighbors`` to n - 1)."""


def scaler_kind(scale: object) -> str | None:
    """``"standard"``, ``"minmax"`` or ``"none"`` for a ``scale`` setting; ``None`` if invalid."""
    if scale is None or isinstance(scale, bool):
        return "standard" if scale else "none"
    return scale if isinstance(scale, str) and scale in SCALERS else None


class BaseDetector(BaseEstimator, ABC):
    """Fit on normal clips, score unseen clips (higher = more anomalous).

    Common keyword parameters (every subclass lists them in its own signature, so that
    scikit-learn's ``get_params``/``set_params``/``clone`` see them):

    * ``scale``: ``True``/``"standard"`` (StandardScaler; constant features get scale 1),
      ``"minmax"`` (MinMaxScaler to [-5, 5], as the Exploring-AAD study) or
      ``False``/``"none"``.
    * ``threshold_method``, ``threshold_quantile``: the :mod:`aad.thresholds` rule applied to
      the training scores (``"percentile"`` with ``1 - c`` is the old ``contamination=c``).
    * ``max_train_samples``: fit on a seeded random subsample of that many rows when given
      more (``None`` = every row).
    * ``random_state``: seeds the subsample and the estimator.

    Subclasses implement ``_fit(X)`` and ``_score(X)`` on scaled rows and, where they have
    settings to check, ``_check_params`` (calling ``super()._check_params()``).
    """

    name: ClassVar[str] = "base"
    min_train_samples: ClassVar[int] = 2
    min_train_reason: ClassVar[str] = "scaling and thresholds need two points"

    def __init__(
        self,
        *,
        scale: bool | str = True,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
        max_train_samples: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.scale = scale
        self.threshold_method = threshold_method
        self.threshold_quantile = threshold_quantile
        self.max_train_samples = max_train_samples
        self.random_state = random_state
        self._check_params()

    # -- subclass hooks -----------------------------------------------------------------
    @abstractmethod
    def _fit(self, X: np.ndarray) -> np.ndarray:
        """Fit on scaled rows; return their training scores (higher = more anomalous)."""

    @abstractmethod
    def _score(self, X: np.ndarray) -> np.ndarray:
        """Scores of scaled rows (higher = more anomalous)."""

    def _check_params(self) -> None:
        """Raise ``ValueError`` for a bad constructor argument (called at init and at fit)."""
        if scaler_kind(self.scale) is None:
            raise ValueError(
                f"{self.name}: scale must be a bool or one of {SCALERS}, got {self.scale!r}"
            )
        try:
            check_threshold_settings(self.threshold_method, self.threshold_quantile)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{self.name}: {exc}") from None
        check_int(
            self.name,
            "max_train_samples",
            self.max_train_samples,
            self.min_train_samples,
            allow_none=True,
        )
        if self.random_state is not None and (
            isinstance(self.random_state, bool)
            or not isinstance(self.random_state, numbers.Integral)
        ):
            raise ValueError(
                f"{self.name}: random_state must be an integer or None, got {self.random_state!r}"
            )

    def _describe_settings(self) -> list[str]:
        """The settings worth a results-table column, e.g. ``["k=3 of 5 requested"]``."""
        return []

    # -- public API -----------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: object = None, feature_signature: str | None = None
    ) -> BaseDetector:
        """Fit on normal training embeddings ``X`` (n, d); ``y`` is ignored. Returns ``self``."""
        self._check_params()
        self.__dict__.pop("threshold_", None)  # a failed refit leaves no stale fitted state
        original = X
        X = self._as_matrix(X, "fit")
        n_seen = X.shape[0]
        if n_seen < self.min_train_samples:
            raise ValueError(
                f"{self.name} needs at least {self.min_train_samples} training clips "
                f"({self.min_train_reason}), got {n_seen}"
            )
        if self.max_train_samples is not None and n_seen > self.max_train_samples:
            rng = np.random.default_rng(self.random_state)
            X = X[np.sort(rng.choice(n_seen, size=self.max_train_samples, replace=False))]
        elif isinstance(original, np.ndarray) and np.may_share_memory(X, original):
            X = X.copy()  # kept for save(): the caller may reuse its buffer
        self.n_samples_seen_ = n_seen
        self.n_train_samples_ = X.shape[0]
        self.n_features_in_ = X.shape[1]
        self.feature_signature_ = feature_signature
        self.train_embeddings_ = X
        kind = scaler_kind(self.scale)
        self.scaler_: StandardScaler | MinMaxScaler | None = None
        if kind == "standard":
            self.scaler_ = StandardScaler().fit(X)
        elif kind == "minmax":
            self.scaler_ = MinMaxScaler(feature_range=MINMAX_RANGE).fit(X)
        scores = np.asarray(self._fit(self._apply_scaler(X)), dtype=np.float64).ravel()
        if scores.shape != (X.shape[0],):
            raise RuntimeError(f"{self.name}: {scores.size} training scores for {len(X)} rows")
        self.decision_scores_ = scores
        self.threshold_ = fit_threshold(scores, self.threshold_method, self.threshold_quantile)
        return self

    def decision_function(self, X: np.ndarray, feature_signature: str | None = None) -> np.ndarray:
        """Anomaly score per row (n,), float64, higher = more anomalous."""
        self._check_fitted()
        self.check_signature(feature_signature)
        X = self._as_matrix(X, "decision_function")
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"{self.name} was fitted on {self.n_features_in_}-dimensional embeddings, "
                f"got {X.shape[1]} dimensions"
            )
        return np.asarray(self._score(self._apply_scaler(X)), dtype=np.float64).ravel()

    def predict(self, X: np.ndarray, feature_signature: str | None = None) -> np.ndarray:
        """1 where the score exceeds ``threshold_`` (anomaly), else 0 (int64)."""
        return decide(self.decision_function(X, feature_signature), self.threshold_)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The scaling the detector sees (identity when ``scale=False``)."""
        self._check_fitted()
        return self._apply_scaler(self._as_matrix(X, "transform"))

    def check_signature(self, feature_signature: str | None) -> None:
        """Refuse embeddings made with another feature configuration than at fit."""
        fitted = getattr(self, "feature_signature_", None)
        if feature_signature is not None and fitted is not None and feature_signature != fitted:
            raise FeatureSignatureError(
                f"{self.name} was fitted on features with signature {fitted!r} "
                f"but is asked to score features with signature {feature_signature!r}: mixed "
                "feature configurations between fit and score are refused (refit the detector "
                "or score with the same feature configuration)"
            )

    def describe(self) -> str:
        """The settings actually used, for results tables: ``"knn (k=3 of 5 requested)"``."""
        settings = self._describe_settings()
        if scaler_kind(self.scale) != "standard":
            settings.append(f"scale={scaler_kind(self.scale)}")
        seen = getattr(self, "n_samples_seen_", None)
        if seen is not None and self.n_train_samples_ < seen:
            settings.append(f"fitted on {self.n_train_samples_} of {seen} rows")
        return f"{self.name} ({', '.join(settings)})" if settings else self.name

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector as a pickle-free ``.npz`` (see :func:`save_detector`)."""
        from aad.detectors.persistence import save_detector

        return save_detector(self, path)

    @classmethod
    def load(cls, path: str | Path) -> BaseDetector:
        """Read a detector written by :meth:`save` (re-fitted, then verified)."""
        from aad.detectors.persistence import load_detector

        return load_detector(path, expected=cls)

    # -- helpers --------------------------------------------------------------------------
    def _clamped(self, setting: str, requested: int, available: int) -> int:
        """``min(requested, available)`` (at least 1), with one warning when reduced."""
        used = max(1, min(requested, available))
        if used != requested:
            warnings.warn(
                f"{self.name}: {setting}={requested} requested but only "
                f"{self.n_train_samples_} training clips; using {setting}={used}",
                SmallTrainingSetWarning,
                stacklevel=4,
            )
        return used

    def _apply_scaler(self, X: np.ndarray) -> np.ndarray:
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"{self.name} is not fitted; call fit(X) first")

    def _as_matrix(self, X: Any, where: str) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"{self.name}.{where} expects a 2-D array (n, d), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{self.name}.{where} got no rows")
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{self.name}.{where}: embeddings contain NaN or Inf")
        return X
