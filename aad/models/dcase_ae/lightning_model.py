"""LightningModule of the DCASE 2020 baseline autoencoder (frame-wise dense AE)."""

from __future__ import annotations

from typing import Any

import torch

from aad.models.base import AnomalyModule
from aad.models.dcase_ae.torch_model import DenseAutoencoder
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE

DCASE2020_FEATURES: dict[str, Any] = {
    "sample_rate": 16000,
    "features": ["mel"],
    "stft": {"n_fft": 1024, "hop_length": 512, "pad_mode": "reflect"},
    # librosa.feature.melspectrogram defaults (slaney scale and norm), 20/2*log10(mel + eps)
    "mel": {"n_mels": 128, "power": 2.0, "log": "dcase", "eps": 2.220446049250313e-16},
    "stack_frames": 5,
}


class DCASEAE(AnomalyModule):
    """The DCASE 2020 Task 2 baseline: 128 log-mels x 5 stacked frames = 640 inputs,
    dense 128x4 -> 8 -> 128x4 -> 640 with BatchNorm + ReLU, MSE. ``score``: ``mean`` frame
    error (the 2020 baseline), ``mahalanobis`` (the 2023 baseline's selective Mahalanobis) or
    ``topk``, the default with ``top_k=8``, chosen on the real sets (protocol P1 mean AUC 0.617
    over 3 seeds, slider 1.000: docs/training.md).

    ``features`` defaults to :data:`DCASE2020_FEATURES`. ``normalize`` (standardising the
    log-mels with training statistics) is aad's default because raw dB inputs train poorly on
    small data (P1 0.386 without it); ``normalize=False`` is the baseline exactly.
    """

    def __init__(
        self,
        features: dict[str, Any] | None = None,
        hidden_size: int = 128,
        num_hidden: int = 4,
        latent_size: int = 8,
        normalize: bool = True,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        score: str = "topk",
        top_k: int = 8,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
    ) -> None:
        super().__init__(
            features=features if features is not None else DCASE2020_FEATURES,
            normalize=normalize,
            learning_rate=learning_rate,
            weight_decay=weight_decay,
            score=score,
            top_k=top_k,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
        )
        self.save_hyperparameters()
        self.model = DenseAutoencoder(
            input_dim=self.input_dim,
            hidden_size=hidden_size,
            num_hidden=num_hidden,
            latent_size=latent_size,
        )
        self.configure_score(self.input_dim)

    def training_loss(self, features: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        frames = features.flatten(0, 1)
        return torch.nn.functional.mse_loss(self.model(frames), frames)

    def reconstruction_errors(self, features: torch.Tensor) -> torch.Tensor:
        frames = features.flatten(0, 1)
        return (frames - self.model(frames)).view(*features.shape[:2], -1)

    def encode(self, features: torch.Tensor) -> torch.Tensor:
        """Clip embedding: the mean bottleneck vector over the clip's stacked frames."""
        latent = self.model.encode(features.flatten(0, 1))
        return latent.view(features.shape[0], features.shape[1], -1).mean(dim=1)
