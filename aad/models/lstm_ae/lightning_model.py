"""LightningModule of the LSTM autoencoder: trains on windows, scores whole clips."""

from __future__ import annotations

from typing import Any

import torch

from aad.models.base import AnomalyModule
from aad.models.lstm_ae.torch_model import LSTMAutoencoder, from_windows, to_windows
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE

LSTM_AE_FEATURES: dict[str, Any] = {"features": ["mel"], "mel": {"n_mels": 128}}
"""128 log-mels (n_fft 1024, hop 512): chosen on the real sets with ``learning_rate=1e-2`` and
``score="mahalanobis"`` (protocol P1 mean AUC 0.636 over 3 seeds, against 0.579 for 64 log-mel
+ 20 MFCC + 12 CENS at 1e-3 and the mean frame error): docs/training.md."""


class LSTMAE(AnomalyModule):
    """LSTM autoencoder over windows of ``window`` feature frames.

    Training reconstructs windows taken every ``train_stride`` frames (default: ``window``);
    scoring cuts the clip into non-overlapping windows (the last one aligned to the clip end)
    and scores each frame by its reconstruction error (see ``score``).

    Args:
        window: frames per window (the sequence length the LSTMs see).
        train_stride: hop between training windows (``None`` = ``window``).
        hidden_size, latent_size, num_layers, bidirectional, dropout: the torch model.
        features: defaults to :data:`LSTM_AE_FEATURES`.
        Others: see :class:`~aad.models.base.AnomalyModule`.
    """

    def __init__(
        self,
        features: dict[str, Any] | None = None,
        window: int = 32,
        train_stride: int | None = None,
        hidden_size: int = 64,
        latent_size: int = 16,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        normalize: bool = True,
        learning_rate: float = 1e-2,
        weight_decay: float = 0.0,
        score: str = "mahalanobis",
        top_k: int = 32,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
    ) -> None:
        super().__init__(
            features=features if features is not None else LSTM_AE_FEATURES,
            normalize=normalize,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            score=score,
            top_k=top_k,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
        )
        if window < 1:
            raise ValueError(f"window must be >= 1 frame, got {window}")
        if train_stride is not None and train_stride < 1:
            raise ValueError(f"train_stride must be >= 1 frame (null = window), got {train_stride}")
        self.save_hyperparameters()
        self.window = window
        self.train_stride = train_stride or window
        self.model = LSTMAutoencoder(
            input_dim=self.input_dim,
            hidden_size=hidden_size,
            latent_size=latent_size,
            num_layers=num_layers,
            bidirectional=bidirectional,
            dropout=dropout,
        )
        self.configure_score(self.input_dim)

    def training_loss(self, features: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        windows, _ = to_windows(features, self.window, self.train_stride)
        return torch.nn.functional.mse_loss(self.model(windows), windows)

    def reconstruction_errors(self, features: torch.Tensor) -> torch.Tensor:
        windows, starts = to_windows(features, self.window, self.window)
        errors = windows - self.model(windows)
        return from_windows(errors, starts, features.shape[0], features.shape[1])

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Clip embedding: the mean of the latent vectors of its non-overlapping windows."""
        windows, starts = to_windows(features, self.window, self.window)
        latent = self.model.encode(windows)
        return latent.view(features.shape[0], len(starts), -1).mean(dim=1)
