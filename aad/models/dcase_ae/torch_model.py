"""The DCASE 2020 Task 2 baseline dense autoencoder (640 -> 128x4 -> 8 -> 128x4 -> 640)."""

from __future__ import annotations

import torch
from torch import nn


def _dense(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, out_features), nn.BatchNorm1d(out_features), nn.ReLU()
    )


class DenseAutoencoder(nn.Module):
    """Frame-wise dense autoencoder with BatchNorm + ReLU, as in the DCASE 2020 baseline.

    >>> DenseAutoencoder(640)(torch.zeros(4, 640)).shape
    torch.Size([4, 640])
    """

    def __init__(
        self,
        input_dim: int = 640,
        hidden_size: int = 128,
        num_hidden: int = 4,
        latent_size: int = 8,
    ) -> None:
        super().__init__()
        encoder = [_dense(input_dim, hidden_size)]
        encoder += [_dense(hidden_size, hidden_size) for _ in range(num_hidden - 1)]
        encoder.append(_dense(hidden_size, latent_size))
        decoder = [_dense(latent_size, hidden_size)]
        decoder += [_dense(hidden_size, hidden_size) for _ in range(num_hidden - 1)]
        decoder.append(nn.Linear(hidden_size, input_dim))
        self.encoder = nn.Sequential(*encoder)
        self.decoder = nn.Sequential(*decoder)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, D) -> (N, latent_size)."""
        return self.encoder(frames)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, D) -> reconstruction (N, D)."""
        return self.decoder(self.encoder(frames))
