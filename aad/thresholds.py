"""Decision thresholds learnt from normal scores only, shared by models and detectors.

The DCASE 2020-2023 baselines fit a gamma distribution to the anomaly scores of normal
clips and take its 0.9 quantile (:data:`DEFAULT_METHOD`, :data:`DEFAULT_QUANTILE`: the one
home of these defaults); ``method="percentile"`` takes the empirical quantile instead.
Thresholds are never tuned on labelled test data.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import scipy.stats

THRESHOLD_METHODS = ("gamma", "percentile")
DEFAULT_METHOD = "gamma"
DEFAULT_QUANTILE = 0.9


def check_threshold_settings(method: str, quantile: float) -> None:
    """Raise ``ValueError`` for an unknown method or a quantile outside (0, 1).

    Called by every model and detector constructor, so a bad setting fails before any
    training starts.
    """
    if method not in THRESHOLD_METHODS:
        raise ValueError(f"threshold_method must be one of {THRESHOLD_METHODS}, got {method!r}")
    if isinstance(quantile, bool) or not 0.0 < float(quantile) < 1.0:
        raise ValueError(f"threshold_quantile must be in (0, 1), got {quantile}")


def fit_threshold(
    normal_scores: Sequence[float] | np.ndarray,
    method: str = DEFAULT_METHOD,
    quantile: float = DEFAULT_QUANTILE,
) -> float:
    """Score above which a clip is called anomalous, from normal scores.

    >>> round(fit_threshold(list(range(1, 101)), method="percentile", quantile=0.9), 1)
    90.1
    """
    check_threshold_settings(method, quantile)
    scores = np.asarray(normal_scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("cannot fit a threshold: no normal training scores")
    if not np.all(np.isfinite(scores)):
        raise ValueError(
            f"cannot fit a threshold: {int((~np.isfinite(scores)).sum())} of "
            f"{scores.size} normal training scores are NaN or Inf"
        )
    if method == "percentile" or scores.size < 3 or np.ptp(scores) == 0.0:
        return float(np.quantile(scores, quantile))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            shape, loc, scale = scipy.stats.gamma.fit(scores)
            threshold = float(scipy.stats.gamma.ppf(quantile, shape, loc=loc, scale=scale))
        except (ValueError, RuntimeError, FloatingPointError):
            threshold = math.nan
    if not math.isfinite(threshold):
        warnings.warn(
            "gamma fit of the normal training scores failed; using the empirical "
            f"{quantile:.2f} quantile instead",
            stacklevel=2,
        )
        return float(np.quantile(scores, quantile))
    return threshold


def decide(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Hard decisions, 1 = anomaly (score above the threshold); all 0 when it is NaN."""
    scores = np.asarray(scores, dtype=np.float64)
    if not math.isfinite(threshold):
        return np.zeros(scores.shape, dtype=np.int64)
    return (scores > threshold).astype(np.int64)
