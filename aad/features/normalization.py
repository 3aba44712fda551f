"""Per-dimension standardisation fitted on normal training clips only."""

import torch
from torch import nn


class FeatureNormalizer(nn.Module):
    """``(x - mean) / std`` per feature dimension (the last axis), fitted by streaming.

    ``update(x)`` takes ``(..., dim)`` batches; per-batch mean and centred sum of squares are
    computed in the batch's dtype on its device and merged (Chan et al.) into float64
    accumulators of size ``dim`` on the CPU, so no whole batch is ever float64.
    ``finalize()`` writes the buffers ``mean``, ``std`` (population) and ``count`` (in the
    state_dict). Constant dimensions (``std <= min_std * (1 + |mean|)``) get ``std = 1``.

    Example::

        norm = FeatureNormalizer(extractor.output_dim())
        for batch in normal_train_loader:
            norm.update(extractor(batch["waveform"]))
        norm.finalize()
        x = norm(features)
    """

    def __init__(self, dim: int, min_std: float = 1e-6) -> None:
        super().__init__()
        self.dim = dim
        self.min_std = min_std
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.register_buffer("count", torch.zeros((), dtype=torch.int64))
        self.reset()

    def reset(self) -> None:
        """Forget the streaming accumulators (fitted buffers stay until ``finalize``)."""
        self._n = 0
        self._mean = torch.zeros(self.dim, dtype=torch.float64)
        self._m2 = torch.zeros(self.dim, dtype=torch.float64)

    @property
    def fitted(self) -> bool:
        """Whether ``finalize`` has run (or fitted buffers were loaded)."""
        return int(self.count) > 0

    @torch.no_grad()
    def update(self, features: torch.Tensor) -> None:
        """Accumulate statistics of one batch ``(..., dim)`` of normal training features."""
        if features.shape[-1] != self.dim:
            raise ValueError(f"expected last dim {self.dim}, got shape {tuple(features.shape)}")
        flat = features.detach().reshape(-1, self.dim)
        n = flat.shape[0]
        if n == 0:
            return
        if not torch.isfinite(flat).all():
            raise ValueError("FeatureNormalizer.update got NaN/Inf features")
        batch_mean = flat.mean(dim=0)
        batch_m2 = (flat - batch_mean).square().sum(dim=0)
        batch_mean = batch_mean.to("cpu", torch.float64)
        batch_m2 = batch_m2.to("cpu", torch.float64)
        total = self._n + n
        delta = batch_mean - self._mean
        self._mean = self._mean + delta * (n / total)
        self._m2 = self._m2 + batch_m2 + delta.square() * (self._n * n / total)
        self._n = total

    def sums(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The accumulators as float64 ``(count, sum, sum of squares)``: these add up across
        processes, so DDP ranks all-reduce them and call :meth:`finalize_from_sums`."""
        count = torch.tensor(float(self._n), dtype=torch.float64)
        total = self._mean * self._n
        return count, total, self._m2 + self._mean.square() * self._n

    def finalize_from_sums(
        self, count: torch.Tensor, total: torch.Tensor, total_sq: torch.Tensor
    ) -> None:
        """Replace the accumulators by summed moments (see :meth:`sums`), then finalize."""
        n = int(round(float(count)))
        self.reset()
        if n > 0:
            self._n = n
            self._mean = total.to("cpu", torch.float64) / n
            m2 = total_sq.to("cpu", torch.float64) - self._mean.square() * n
            self._m2 = m2.clamp_min(0.0)
        self.finalize()

    def finalize(self) -> None:
        """Write ``mean``/``std``/``count`` from the accumulators; raise if nothing was seen."""
        if self._n == 0:
            raise RuntimeError("FeatureNormalizer.finalize() before any update()")
        std = (self._m2 / self._n).sqrt()
        constant = std <= self.min_std * (1.0 + self._mean.abs())
        std = torch.where(constant, torch.ones_like(std), std)
        self.mean.copy_(self._mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))
        self.count.fill_(self._n)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if not self.fitted:
            raise RuntimeError("FeatureNormalizer used before finalize() (or loading a state)")
        return (features - self.mean.to(features.dtype)) / self.std.to(features.dtype)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, fitted={self.fitted}"
