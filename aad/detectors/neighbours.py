"""The neighbour-search settings kNN distance and LOF share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sklearn.neighbors import VALID_METRICS

from aad.detectors.base import BaseDetector
from aad.detectors.validation import check_choice, check_float, check_int

ALGORITHMS = ("auto", "ball_tree", "kd_tree", "brute")
METRICS = tuple(sorted(set(VALID_METRICS["brute"]) - {"precomputed"}))
Metric = str | Callable[..., float]


class NeighbourDetector(BaseDetector):
    """A detector built on scikit-learn's neighbour search (``NearestNeighbors`` options).

    Training scores leave each point out of its own neighbours, so it needs at least two
    training clips; with ``n`` clips, ``n_neighbors`` is clamped to ``n - 1`` (one
    :class:`~aad.detectors.base.SmallTrainingSetWarning`) and the value used is
    ``n_neighbors_``. Search is O(n_train x n_query) in high dimension: by default it fits on
    a seeded subsample of at most ``max_train_samples=20_000`` rows.
    """

    min_train_reason = "each clip needs a neighbour other than itself"

    def _check_params(self) -> None:
        super()._check_params()
        check_int(self.name, "n_neighbors", self.n_neighbors, 1)
        check_choice(self.name, "algorithm", self.algorithm, ALGORITHMS)
        check_int(self.name, "leaf_size", self.leaf_size, 1)
        if not callable(self.metric):
            check_choice(self.name, "metric", self.metric, METRICS)
        check_float(self.name, "p", self.p, 0.0, low_open=True)
        if self.n_jobs is not None:
            check_int(self.name, "n_jobs", self.n_jobs, -1)

    def _describe_settings(self) -> list[str]:
        used = getattr(self, "n_neighbors_", None)
        if used is not None and used != self.n_neighbors:
            return [f"k={used} of {self.n_neighbors} requested"]
        return [f"k={self.n_neighbors}"]

    def _search_params(self, n_train: int) -> dict[str, Any]:
        """Keyword arguments for ``NearestNeighbors`` / ``LocalOutlierFactor``; sets
        ``n_neighbors_`` (clamped to ``n_train - 1``)."""
        self.n_neighbors_ = self._clamped("n_neighbors", self.n_neighbors, n_train - 1)
        return {
            "n_neighbors": self.n_neighbors_,
            "algorithm": self.algorithm,
            "leaf_size": self.leaf_size,
            "metric": self.metric,
            "p": self.p,
            "n_jobs": self.n_jobs,
        }
