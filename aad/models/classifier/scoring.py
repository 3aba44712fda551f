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

import math
from typing import NamedTuple

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

    def tensors(
        self, num_classes: int, num_domains: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The fit as ``means (C, D, E)``, ``counts (C, D)`` (1 where fitted, else 0) and
        ``precisions (C, E, E)`` (float32) for :func:`mahalanobis_shares` and checkpoints."""
        if not self.means:
            raise RuntimeError("MahalanobisScorer.tensors before fit")
        dim = next(iter(self.means.values())).shape[0]
        means = torch.zeros(num_classes, num_domains, dim)
        counts = torch.zeros(num_classes, num_domains)
        precisions = torch.zeros(num_classes, dim, dim)
        for (c, d), mean in self.means.items():
            means[c, max(d, 0)], counts[c, max(d, 0)] = mean.float().cpu(), 1.0
        for c, precision in self.precisions.items():
            precisions[c] = precision.float().cpu()
        return means, counts, precisions

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


# ------------------------------------------------------------------ per-crop shares (aad model)
class CropOutputs(NamedTuple):
    """What the network gives for a batch of clips' sliding crops (float32): ``embeddings``
    ``(B, K, E)``, ``logits`` ``(B, K, C)``, Mahalanobis ``vectors`` ``(B, K, V)``."""

    embeddings: torch.Tensor
    logits: torch.Tensor
    vectors: torch.Tensor


def crop_vectors(
    embeddings: torch.Tensor,
    features: torch.Tensor,
    centre: torch.Tensor,
    scale: torch.Tensor,
    input_statistics: bool,
) -> torch.Tensor:
    """The vectors the Mahalanobis score compares, ``(N, V)``: each crop's embedding
    ``(N, E)``, with ``input_statistics`` its normalised log-mel ``features`` ``(N, T, D)``
    mean and standard deviation over the frames appended (``V = E + 2 D``), standardised as
    ``(v - centre) / scale`` (0 and 1 until calibrated)."""
    vectors = embeddings.float()
    if input_statistics:
        stats = [features.mean(dim=1), features.std(dim=1)]
        vectors = torch.cat([vectors, *(s.float() for s in stats)], dim=1)
    return (vectors - centre) / scale


ABSENT = -1e30
"""Log-weight of a class that does not count for an id (``exp`` of it is 0 in float32)."""


def id_log_mask(num_ids: int, class_ids: list[int], read: list[bool] | None = None) -> torch.Tensor:
    """``(I, C)`` log-weights for :func:`own_class_nll`: 0 where class c (of id
    ``class_ids[c]``) counts for its id (``read[c]``, default every class), else ``ABSENT``."""
    mask = torch.full((num_ids, len(class_ids)), ABSENT)
    for c, i in enumerate(class_ids):
        if read is None or read[c]:
            mask[i, c] = 0.0
    return mask


def own_class_nll(logits: torch.Tensor, classes: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``(B, K, C)`` crop logits -> ``(B, K)`` ``-log p(own id)``, ``classes`` ``(B,)`` the
    clip's id (-1: its most probable id). ``mask`` (:func:`id_log_mask`) says which classes
    make up each id: p(id) is the sum of their probabilities (an id's attribute classes; with
    pseudo-classes only the id as recorded counts)."""
    log_prob = F.log_softmax(logits.float(), dim=-1)
    per_id = torch.logsumexp(log_prob[..., None, :] + mask.to(log_prob), dim=-1)  # (B, K, I)
    index = classes.clamp_min(0).view(-1, 1, 1).expand(-1, per_id.shape[1], 1)
    own = per_id.gather(2, index).squeeze(2)
    return -torch.where(classes[:, None] >= 0, own, per_id.max(dim=2).values)


def knn_shares(
    crops: torch.Tensor,
    classes: torch.Tensor,
    bank: torch.Tensor,
    bank_classes: torch.Tensor,
    bank_domains: torch.Tensor,
    k: int = 1,
    exclude: torch.Tensor | None = None,
) -> torch.Tensor:
    """kNN cosine distance of each clip's mean unit crop embedding (``crops`` ``(B, K, E)``)
    to the bank (:func:`knn_nearest`), split into one share per crop ``(B, K)`` whose mean is
    the clip's distance (share k: ``1 - <u_k, mean of the neighbours> / |mean_k u_k|``)."""
    unit = F.normalize(crops.float(), dim=-1)
    clip = unit.mean(dim=1)
    norm = clip.norm(dim=1).clamp_min(1e-12)
    distance, nearest = knn_nearest(clip / norm[:, None], classes, bank, bank_classes,
                                    bank_domains, k, exclude)  # fmt: skip
    shares = 1.0 - (unit * nearest[:, None, :]).sum(dim=2) / norm[:, None]
    return torch.where(torch.isfinite(distance)[:, None], shares, math.inf)


def knn_nearest(
    queries: torch.Tensor,
    classes: torch.Tensor,
    bank: torch.Tensor,
    bank_classes: torch.Tensor,
    bank_domains: torch.Tensor,
    k: int = 1,
    exclude: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """kNN cosine distance of unit ``queries`` ``(N, E)`` to a bank of unit rows ``(M, E)``.

    Like :class:`KNNScorer` (one bank per (class, domain), the minimum over the query's class's
    banks; class -1 against every bank), on plain tensors that a checkpoint can hold. Returns
    the distances ``(N,)`` and the mean of the chosen ``k`` nearest rows ``(N, E)`` (so that
    ``1 - <query, mean> == distance``). ``exclude`` ``(N,)`` names a bank row each query may
    not use (leave-one-out on the bank's own clips; -1: none); a query left with no row of its
    class gets ``inf``.
    """
    n = queries.shape[0]
    similarity = queries.float() @ bank.float().T
    if exclude is not None:
        rows = torch.nonzero(exclude >= 0).squeeze(1)
        similarity[rows, exclude[rows]] = -math.inf
    best = torch.full((n,), math.inf, device=queries.device)
    neighbours = torch.zeros_like(queries, dtype=torch.float32)
    pairs = torch.unique(torch.stack([bank_classes, bank_domains]), dim=1).T.tolist()
    for c, d in pairs:
        columns = torch.nonzero((bank_classes == c) & (bank_domains == d)).squeeze(1)
        rows = torch.nonzero((classes == c) | (classes < 0)).squeeze(1)
        if not len(rows):
            continue
        top = similarity[rows][:, columns].topk(min(k, len(columns)), dim=1)
        valid = torch.isfinite(top.values)
        count = valid.sum(dim=1)
        mean_similarity = torch.where(valid, top.values, 0.0).sum(dim=1) / count.clamp_min(1)
        distance = torch.where(count > 0, 1.0 - mean_similarity, math.inf)
        chosen = bank[columns][top.indices].float() * valid[..., None]
        mean_row = chosen.sum(dim=1) / count.clamp_min(1)[:, None]
        better = distance < best[rows]
        best[rows] = torch.where(better, distance, best[rows])
        neighbours[rows] = torch.where(better[:, None], mean_row, neighbours[rows])
    return best, neighbours


def mahalanobis_pairs(
    means: torch.Tensor, counts: torch.Tensor, precisions: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """The fitted (class, domain) pairs of ``means`` ``(C, D, E)``, ``counts`` ``(C, D)`` (0 =
    not fitted) and ``precisions`` ``(C, E, E)``: their means ``(P, E)`` and precisions
    ``(P, E, E)`` in float64, and each pair's class (pairs in (class, domain) order)."""
    pairs = torch.nonzero(counts > 0).tolist()
    if not pairs:
        raise ValueError("no fitted (class, domain) pair: fit the Mahalanobis statistics first")
    pair_means = torch.stack([means[c, d] for c, d in pairs]).double()
    pair_precisions = torch.stack([precisions[c] for c, _ in pairs]).double()
    return pair_means, pair_precisions, [c for c, _ in pairs]


def pair_mahalanobis_shares(
    crops: torch.Tensor,
    classes: torch.Tensor,
    pair_means: torch.Tensor,
    pair_precisions: torch.Tensor,
    pair_classes: list[int],
) -> torch.Tensor:
    """:func:`mahalanobis_shares` on the pairs of :func:`mahalanobis_pairs`, in tensor ops
    whose sizes follow the input (``aad.export`` exports this function): per clip the
    nearest pair of its class (every pair for class -1; the first on ties), ``inf`` when none
    gives a finite distance."""
    x = crops.double()
    clip = x.mean(dim=1)
    distances, shares = [], []
    for mean, precision, c in zip(pair_means, pair_precisions, pair_classes, strict=True):
        weighted = (clip - mean) @ precision  # (N, E)
        distance = (weighted * (clip - mean)).sum(dim=1)
        mine = ((classes == c) | (classes < 0)) & ~distance.isnan()
        distances.append(torch.where(mine, distance, math.inf))
        shares.append(((x - mean) * weighted[:, None, :]).sum(dim=2))  # (N, K)
    distance = torch.stack(distances, dim=1)  # (N, P)
    nearest = distance.argmin(dim=1)[:, None, None].expand(-1, 1, x.shape[1])
    chosen = torch.stack(shares, dim=1).gather(1, nearest).squeeze(1)
    found = torch.isfinite(distance.amin(dim=1))[:, None]
    return torch.where(found, chosen, math.inf).float()


def mahalanobis_shares(
    crops: torch.Tensor,
    classes: torch.Tensor,
    means: torch.Tensor,
    counts: torch.Tensor,
    precisions: torch.Tensor,
) -> torch.Tensor:
    """Squared Mahalanobis distance of each clip's mean crop embedding to the nearest fitted
    (class, domain) mean, split into one share per crop: ``(N, K)``, whose mean over K is the
    clip's distance ``(m - mu)^T P (m - mu)`` (share k: ``(e_k - mu)^T P (m - mu)``).

    ``crops`` ``(N, K, E)``; ``means`` ``(C, D, E)``, ``counts`` ``(C, D)`` (0 = not fitted)
    and ``precisions`` ``(C, E, E)`` as :class:`MahalanobisScorer` fits them; class -1 is
    scored against every class.
    """
    if not bool((counts > 0).any()):
        return torch.full(crops.shape[:2], math.inf, device=crops.device)
    pairs = mahalanobis_pairs(means.to(crops.device), counts, precisions.to(crops.device))
    return pair_mahalanobis_shares(crops, classes, *pairs)


def mahalanobis_cross_fit(
    crops: torch.Tensor, classes: torch.Tensor, domains: torch.Tensor, folds: int = 5
) -> torch.Tensor:
    """Held-out Mahalanobis clip scores of the fitting clips themselves ``(N,)``: the clips
    of each class are dealt into ``folds`` folds, and each fold is scored by a fit on the
    other folds (an in-sample score is far lower than a new clip's in 128 dimensions). NaN
    for a clip whose class has no clip outside its fold."""
    rank = torch.zeros_like(classes)
    for c in classes.unique():
        rows = torch.nonzero(classes == c).squeeze(1)
        rank[rows] = torch.arange(len(rows), device=classes.device)
    fold = rank % folds
    scores = torch.full((len(crops),), math.nan, device=crops.device)
    num_classes, k = int(classes.max()) + 1, crops.shape[1]
    for f in fold.unique().tolist():
        held, fit = fold == f, fold != f
        fitted = classes[fit].unique()
        if not len(fitted):
            continue
        scorer = MahalanobisScorer().fit(
            crops[fit].flatten(0, 1),
            classes[fit].repeat_interleave(k),
            domains[fit].repeat_interleave(k),
        )
        means, counts, precisions = (
            t.to(crops.device) for t in scorer.tensors(num_classes, int(domains.max()) + 1)
        )
        rows = held & torch.isin(classes, fitted)
        scores[rows] = mahalanobis_shares(crops[rows], classes[rows], means, counts,
                                          precisions).mean(dim=1)  # fmt: skip
    return scores
