"""Models trained on normal clips: a shared ``AnomalyModule`` base and one folder per model."""

from aad.checkpoints import CheckpointError, load_module
from aad.models.base import AnomalyModule, NonFiniteLossError
from aad.models.classifier import MachineIDClassifier
from aad.models.dcase_ae import DCASEAE
from aad.models.lstm_ae import LSTMAE

__all__ = [
    "DCASEAE",
    "LSTMAE",
    "AnomalyModule",
    "CheckpointError",
    "MachineIDClassifier",
    "NonFiniteLossError",
    "load_module",
]
