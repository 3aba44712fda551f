"""LSTM autoencoder: plain torch model and its LightningModule."""

from aad.models.lstm_ae.lightning_model import LSTMAE
from aad.models.lstm_ae.torch_model import LSTMAutoencoder

__all__ = ["LSTMAE", "LSTMAutoencoder"]
