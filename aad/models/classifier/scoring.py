"""Anomaly scores from the machine-id classifier (higher = more anomalous, PyOD convention).

- :func:`class_nll`: negative log-probability of a crop's own class (softmax of the plain
  scaled cosine logits); :func:`clip_mean` averages crop values per clip.
- :class:`KNNScorer`: cosine distance of an embedding to its k nearest normal training
  embeddings of its own class, the minimum over the source and target domain banks.
- :class:`MahalanobisScorer`: squared Mahalanobis distance to the class mean (per domain,
  minimum over domains) under the class's Ledoit-Wolf shrunk within-class covariance.

Class ``-1`` (a machine id not seen in training) is scored against every class: the most
probable class for :func:`class_nll`, the nearest class for the distance scorers.
Everything is torch (any device, float32 or float64 maths).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_nll(logits: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """``-log softmax(logits)[class]`` per row ``(N,)``; class -1: ``-max log softmax``."""
    log_prob = F.log_softmax(logits.float(), dim=1)
    own = log_prob.gather(1, classes.clamp_min(0)[:, None]).squeeze(1)
    return -torch.where(classes >= 0, own, log_prob.max(dim=1).values)


def clip_mean(values: torch.Tensor, clip_index: torch.Tensor, num_clips: int) -> torch.Tensor:
    """Mean of ``values`` ``(N, ...)`` over the rows of each clip -> ``(num_clips, ...)``."""
    total = values.new_zeros((num_clips, *values.shape[1:])).index_add_(0, clip_index, values)
    count = torch.bincount(clip_index, minlength=num_clips).clamp_min(1).to(values.dtype)
    return total / count.view(-1, *([1] * (values.dim() - 1)))


def _domains_or_none(domains: torch.Tensor | None, count: int, device) -> torch.Tensor:
    if domains is None:
        return torch.full((count,), -1, dtype=torch.long, device=device)
    return domains.to(device=device, dtype=torch.long)


def _check_classes(classes: torch.Tensor, fitted: list[int], name: str) -> None:
    unknown = sorted(set(classes[classes >= 0].tolist()) - set(fitted))
    if unknown:
        raise ValueError(f"{name}: classes {unknown} were not fitted (fitted: {fitted})")


class KNNScorer:
    """Mean cosine distance to the ``k`` nearest training embeddings of the query's class.

    ``fit`` keeps one bank per (class, domain); ``score`` takes, for each query, the minimum
    over its class's domain banks (source and target when domains exist), or over every
    bank for class -1. Domains -1 mean "no domain".

    >>> scorer = KNNScorer(k=1).fit(torch.eye(2), torch.tensor([0, 1]))
    >>> scorer.score(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), torch.tensor([0, 1])).tolist()
    [0.0, 1.0]
    """

    def __init__(self, k: int = 1) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.banks: dict[tuple[int, int], torch.Tensor] = {}

    def fit(
        self, embeddings: torch.Tensor, classes: torch.Tensor, domains: torch.Tensor | None = None
    ) -> KNNScorer:
        """Store the L2-normalised normal training embeddings ``(N, E)`` per class/domain."""
        unit = F.normalize(embeddings.float(), dim=1)
        domains = _domains_or_none(domains, len(unit), unit.device)
        classes = classes.to(unit.device)
        if bool((classes < 0).any()):
            raise ValueError("KNNScorer.fit needs the class of every training embedding")
        self.banks = {}
        for c in classes.unique().tolist():
            for d in domains[classes == c].unique().tolist():
                self.banks[(c, d)] = unit[(classes == c) & (domains == d)]
        return self

    @property
    def classes(self) -> list[int]:
        return sorted({c for c, _ in self.banks})

    def _distance(self, unit: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        distance = 1.0 - unit @ bank.T
        k = min(self.k, bank.shape[0])
        return distance.topk(k, dim=1, largest=False).values.mean(dim=1)

    def score(self, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``(N,)`` distances (0 identical .. 2 opposite); higher = more anomalous."""
        if not self.banks:
            raise RuntimeError("KNNScorer.score before fit")
        _check_classes(classes, self.classes, "KNNScorer")
        unit = F.normalize(embeddings.float(), dim=1)
        classes = classes.to(unit.device)
        scores = torch.full((len(unit),), float("inf"), device=unit.device)
        for (c, _), bank in self.banks.items():
            rows = (classes == c) | (classes < 0)
            if rows.any():
                scores[rows] = torch.minimum(scores[rows], self._distance(unit[rows], bank))
        return scores


def ledoit_wolf(centred: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Ledoit-Wolf shrunk covariance of already-centred rows ``(n, p)`` and its shrinkage
    (scikit-learn's ``ledoit_wolf(..., assume_centered=True)``)."""
    x = centred.double()
    n, p = x.shape
    emp_cov = x.T @ x / n
    x2 = x.square()
    trace_terms = x2.sum(dim=0) / n
    mu = float(trace_terms.sum()) / p
    delta_sum = float((x.T @ x).square().sum()) / n**2
    beta_sum = float((x2.T @ x2).sum())
    beta = (beta_sum / n - delta_sum) / (p * n)
    delta = (delta_sum - 2.0 * mu * float(trace_terms.sum()) + p * mu**2) / p
    beta = min(beta, delta)
    shrinkage = 0.0 if beta == 0 else beta / delta
    cov = (1.0 - shrinkage) * emp_cov
    cov.diagonal().add_(shrinkage * mu)
    return cov, shrinkage


class MahalanobisScorer:
    """Squared Mahalanobis distance to the class mean, minimum over the class's domains.

    ``fit`` estimates one mean per (class, domain) and one covariance per class from the
    embeddings centred on their own (class, domain) mean, shrunk towards ``mu * I`` by
    Ledoit-Wolf (``shrinkage=None``) or by a fixed ``shrinkage`` in [0, 1].
    """

    def __init__(self, shrinkage: float | None = None) -> None:
        if shrinkage is not None and not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1] or None, got {shrinkage}")
        self.shrinkage = shrinkage
        self.means: dict[tuple[int, int], torch.Tensor] = {}
        self.precisions: dict[int, torch.Tensor] = {}
        self.shrinkages: dict[int, float] = {}

    def fit(
        self, embeddings: torch.Tensor, classes: torch.Tensor, domains: torch.Tensor | None = None
    ) -> MahalanobisScorer:
        x = embeddings.double()
        domains = _domains_or_none(domains, len(x), x.device)
        classes = classes.to(x.device)
        if bool((classes < 0).any()):
            raise ValueError("MahalanobisScorer.fit needs the class of every training embedding")
        self.means, self.precisions, self.shrinkages = {}, {}, {}
        for c in classes.unique().tolist():
            pieces = []
            for d in domains[classes == c].unique().tolist():
                rows = x[(classes == c) & (domains == d)]
                self.means[(c, d)] = rows.mean(dim=0)
                pieces.append(rows - self.means[(c, d)])
            centred = torch.cat(pieces)
            cov, shrinkage = ledoit_wolf(centred)
            if self.shrinkage is not None:
                shrinkage = self.shrinkage
                emp_cov = centred.T @ centred / len(centred)
                mu = float(emp_cov.diagonal().mean())
                cov = (1.0 - shrinkage) * emp_cov
                cov.diagonal().add_(shrinkage * mu)
            self.precisions[c] = torch.linalg.pinv(cov, hermitian=True)
            self.shrinkages[c] = shrinkage
        return self

    @property
    def classes(self) -> list[int]:
        return sorted(self.precisions)

    def score(self, embeddings: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """``(N,)`` squared distances; higher = more anomalous."""
        if not self.means:
            raise RuntimeError("MahalanobisScorer.score before fit")
        _check_classes(classes, self.classes, "MahalanobisScorer")
        x = embeddings.double()
        classes = classes.to(x.device)
        scores = torch.full((len(x),), float("inf"), dtype=torch.float64, device=x.device)
        for (c, _), mean in self.means.items():
            rows = (classes == c) | (classes < 0)
            if rows.any():
                diff = x[rows] - mean
                distance = ((diff @ self.precisions[c]) * diff).sum(dim=1)
                scores[rows] = torch.minimum(scores[rows], distance)
        return scores.float()
