"""The one detector contract (PyOD style) shared by every classical method.

``fit(X)`` on normal training embeddings; ``decision_function(X)`` returns one score per
row, higher = more anomalous; ``threshold_`` is the ``1 - contamination`` quantile of the
training scores; ``predict(X)`` is ``score > threshold_``. A ``feature_signature`` given at
fit is stored and checked when scoring, so embeddings from another feature configuration
are refused. ``save``/``load`` use joblib with a format version.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import joblib
import numpy as np
from sklearn.preprocessing import MinMaxScaler, StandardScaler

FORMAT_VERSION = 1
SCALERS = ("standard", "minmax", "none")
MINMAX_RANGE = (-5.0, 5.0)  # the Exploring-AAD study's MinMaxScaler(-5, 5)


class FeatureSignatureError(ValueError):
    """Embeddings scored with a feature configuration other than the one fitted on."""


class BaseDetector(ABC):
    """Fit on normal clips, score unseen clips (higher = more anomalous).

    ``scale``: ``True``/``"standard"`` (StandardScaler; constant features get scale 1),
    ``"minmax"`` (MinMaxScaler to [-5, 5], as the Exploring-AAD study) or ``False``/``"none"``.
    Subclasses implement ``_fit(X)`` and ``_score(X)`` on scaled data and declare
    ``min_train_samples``. Fitting on more than ``max_train_samples`` rows uses a seeded
    random subsample of that size (``None`` = use every row).
    """

    name: ClassVar[str] = "base"

    def __init__(
        self,
        *,
        contamination: float = 0.1,
        scale: bool | str = True,
        max_train_samples: int | None = None,
        random_state: int = 0,
    ) -> None:
        if not 0.0 < contamination < 0.5 + 1e-12:
            raise ValueError(f"{self.name}: contamination must be in (0, 0.5], got {contamination}")
        scaler = {True: "standard", False: "none", None: "none"}.get(scale, scale)
        if scaler not in SCALERS:
            raise ValueError(
                f"{self.name}: scale must be a bool or one of {SCALERS}, got {scale!r}"
            )
        self.contamination = contamination
        self.scale = scale
        self.max_train_samples = max_train_samples
        self.random_state = random_state
        self.feature_signature: str | None = None
        self.n_features_in_: int | None = None
        self.scaler_: StandardScaler | MinMaxScaler | None = None
        self.decision_scores_: np.ndarray | None = None
        self.threshold_: float | None = None
        self.n_train_samples_: int | None = None

    # -- subclass hooks -----------------------------------------------------------------
    @property
    @abstractmethod
    def min_train_samples(self) -> int:
        """Fewest training rows this configuration can fit on."""

    @abstractmethod
    def _fit(self, X: np.ndarray) -> np.ndarray:
        """Fit on standardised rows; return their training scores (higher = more anomalous)."""

    @abstractmethod
    def _score(self, X: np.ndarray) -> np.ndarray:
        """Scores of standardised rows (higher = more anomalous)."""

    def _minimum_reason(self) -> str:
        return ""

    # -- public API -----------------------------------------------------------------------
    def fit(self, X: np.ndarray, feature_signature: str | None = None) -> BaseDetector:
        """Fit on normal training embeddings ``X`` (n, d); returns ``self``."""
        X = self._as_matrix(X, "fit")
        n_samples = X.shape[0]
        if n_samples < self.min_train_samples:
            reason = self._minimum_reason()
            raise ValueError(
                f"{self.name} needs at least {self.min_train_samples} training clips"
                f"{' (' + reason + ')' if reason else ''}, got {n_samples}"
            )
        if self.max_train_samples is not None and n_samples > self.max_train_samples:
            rng = np.random.default_rng(self.random_state)
            keep = np.sort(rng.choice(n_samples, size=self.max_train_samples, replace=False))
            X = X[keep]
        self.n_features_in_ = X.shape[1]
        self.n_train_samples_ = X.shape[0]
        self.feature_signature = feature_signature
        scaler = {True: "standard", False: "none", None: "none"}.get(self.scale, self.scale)
        self.scaler_ = None
        if scaler == "standard":
            self.scaler_ = StandardScaler().fit(X)
        elif scaler == "minmax":
            self.scaler_ = MinMaxScaler(feature_range=MINMAX_RANGE).fit(X)
        if self.scaler_ is not None:
            X = self.scaler_.transform(X)
        train_scores = np.asarray(self._fit(X), dtype=np.float64)
        self.decision_scores_ = train_scores
        self.threshold_ = float(np.quantile(train_scores, 1.0 - self.contamination))
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
        return np.asarray(self._score(self.transform(X)), dtype=np.float64)

    def predict(self, X: np.ndarray, feature_signature: str | None = None) -> np.ndarray:
        """1 where the score exceeds ``threshold_`` (anomaly), else 0."""
        return (self.decision_function(X, feature_signature) > self.threshold_).astype(np.int64)

    def transform(self, X: np.ndarray) -> np.ndarray:
        """The standardisation the detector sees (identity when ``scale=False``)."""
        return self.scaler_.transform(X) if self.scaler_ is not None else X

    def check_signature(self, feature_signature: str | None) -> None:
        """Refuse embeddings made with another feature configuration than at fit."""
        if (
            feature_signature is not None
            and self.feature_signature is not None
            and feature_signature != self.feature_signature
        ):
            raise FeatureSignatureError(
                f"{self.name} was fitted on features with signature {self.feature_signature!r} "
                f"but is asked to score features with signature {feature_signature!r}: mixed "
                "feature configurations between fit and score are refused (refit the detector "
                "or score with the same feature configuration)"
            )

    def save(self, path: str | Path) -> Path:
        """Write the fitted detector (joblib, with a format version)."""
        self._check_fitted()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "format_version": FORMAT_VERSION,
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "detector": self,
        }
        joblib.dump(payload, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> BaseDetector:
        """Read a detector written by :meth:`save`; refuses other format versions."""
        payload = joblib.load(Path(path))
        if not isinstance(payload, dict) or "format_version" not in payload:
            raise ValueError(f"{path} is not an aad detector file")
        if payload["format_version"] != FORMAT_VERSION:
            raise ValueError(
                f"{path} has detector format version {payload['format_version']}, "
                f"this aad reads version {FORMAT_VERSION}"
            )
        detector = payload["detector"]
        if not isinstance(detector, cls):
            raise TypeError(f"{path} holds a {type(detector).__name__}, not a {cls.__name__}")
        return detector

    def get_params(self) -> dict[str, Any]:
        """Constructor parameters (for tables and reprs)."""
        return {
            k: v for k, v in vars(self).items() if not k.endswith("_") and k != "feature_signature"
        }

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"

    # -- helpers --------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if self.threshold_ is None:
            raise RuntimeError(f"{self.name} is not fitted; call fit(X) first")

    def _as_matrix(self, X: np.ndarray, where: str) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2:
            raise ValueError(f"{self.name}.{where} expects a 2-D array (n, d), got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError(f"{self.name}.{where} got no rows")
        if not np.all(np.isfinite(X)):
            raise ValueError(f"{self.name}.{where}: embeddings contain NaN or Inf")
        return X
