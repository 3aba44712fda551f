"""DCASE 2020 baseline dense autoencoder: plain torch model and its LightningModule."""

from aad.models.dcase_ae.lightning_model import DCASEAE
from aad.models.dcase_ae.torch_model import DenseAutoencoder

__all__ = ["DCASEAE", "DenseAutoencoder"]
