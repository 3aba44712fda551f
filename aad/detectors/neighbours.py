"""The neighbour-search settings kNN distance and LOF share."""

from __future__ import annotations

from typing import Any

from aad.detectors.base import BaseDetector


class NeighbourDetector(BaseDetector):
    """A detector built on scikit-learn's neighbour search (``NearestNeighbors`` options).

    Training scores leave each point out of its own neighbours, so it needs at least
    ``n_neighbors + 1`` training clips. Search is O(n_train x n_query) in high dimension:
    by default it fits on a seeded subsample of at most ``max_train_samples=20_000`` rows.
    """

    def __init__(
        self,
        n_neighbors: int,
        algorithm: str = "auto",
        leaf_size: int = 30,
        metric: str = "minkowski",
        p: float = 2,
        n_jobs: int | None = None,
        max_train_samples: int | None = 20_000,
        **base: object,
    ) -> None:
        super().__init__(max_train_samples=max_train_samples, **base)
        if n_neighbors < 1:
            raise ValueError(f"{self.name}: n_neighbors must be >= 1, got {n_neighbors}")
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.n_jobs = n_jobs

    @property
    def min_train_samples(self) -> int:
        return self.n_neighbors + 1

    def _minimum_reason(self) -> str:
        return f"n_neighbors={self.n_neighbors} + 1"

    def _search_params(self) -> dict[str, Any]:
        """Keyword arguments for ``NearestNeighbors`` / ``LocalOutlierFactor``."""
        return {
            "n_neighbors": self.n_neighbors,
            "algorithm": self.algorithm,
            "leaf_size": self.leaf_size,
            "metric": self.metric,
            "p": self.p,
            "n_jobs": self.n_jobs,
        }
