"""A sequence-to-sequence LSTM autoencoder over windows of feature frames."""

from __future__ import annotations

import torch
from torch import nn


def window_starts(num_frames: int, window: int, stride: int) -> list[int]:
    """Start frames of windows of ``window`` frames every ``stride`` frames covering the clip.

    The last window is aligned to the end of the clip so that every frame is covered;
    a clip shorter than ``window`` is one window of its own length.

    >>> window_starts(10, 4, 4)
    [0, 4, 6]
    """
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window + 1, stride))
    if starts[-1] != num_frames - window:
        starts.append(num_frames - window)
    return starts


def to_windows(features: torch.Tensor, window: int, stride: int) -> tuple[torch.Tensor, list[int]]:
    """(B, T, D) -> (B * W, min(window, T), D) windows, and their start frames."""
    _, num_frames, _ = features.shape
    length = min(window, num_frames)
    starts = window_starts(num_frames, length, stride)
    windows = torch.stack([features[:, s : s + length] for s in starts], dim=1)
    return windows.flatten(0, 1), starts


def from_windows(
    values: torch.Tensor, starts: list[int], batch: int, num_frames: int
) -> torch.Tensor:
    """Average per-window frame values ``(B * W, L, ...)`` back onto the clip's frames
    -> ``(B, T, ...)`` (frames covered by two windows get the mean of both)."""
    length = values.shape[1]
    values = values.reshape(batch, len(starts), length, *values.shape[2:])
    total = values.new_zeros(batch, num_frames, *values.shape[3:])
    count = values.new_zeros(num_frames)
    for i, start in enumerate(starts):
        total[:, start : start + length] += values[:, i]
        count[start : start + length] += 1
    return total / count.view(-1, *([1] * (values.dim() - 3)))


class LSTMAutoencoder(nn.Module):
    """Encoder LSTM -> linear latent -> decoder LSTM -> linear head.

    The encoder reads a window of frames; its last hidden state (both directions when
    bidirectional) is projected to a ``latent_size`` vector, which is repeated for every
    frame and decoded back into the window.

    >>> model = LSTMAutoencoder(input_dim=8, hidden_size=16, latent_size=4)
    >>> model(torch.zeros(2, 5, 8)).shape
    torch.Size([2, 5, 8])
    """

    def __init__(
        self,
        input_dim: int,
        hidden_size: int = 64,
        latent_size: int = 16,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        directions = 2 if bidirectional else 1
        lstm_dropout = dropout if num_layers > 1 else 0.0
        self.encoder = nn.LSTM(
            input_dim,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=lstm_dropout,
        )
        self.to_latent = nn.Linear(hidden_size * directions, latent_size)
        self.decoder = nn.LSTM(
            latent_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=lstm_dropout,
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size * directions, input_dim)
        self.directions = directions

    def encode(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, L, D) windows -> (N, latent_size) latent vectors."""
        _, (hidden, _) = self.encoder(windows)
        last = hidden[-self.directions :]  # last layer, every direction: (dirs, N, H)
        last = last.transpose(0, 1).flatten(1)
        return self.to_latent(self.dropout(last))

    def decode(self, latent: torch.Tensor, length: int) -> torch.Tensor:
        """(N, latent_size) -> (N, length, D) reconstruction."""
        repeated = latent.unsqueeze(1).expand(-1, length, -1)
        decoded, _ = self.decoder(repeated)
        return self.head(self.dropout(decoded))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        """(N, L, D) -> reconstruction (N, L, D)."""
        return self.decode(self.encode(windows), windows.shape[1])
