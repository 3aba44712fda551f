"""aad: unsupervised anomaly detection in machine sounds with PyTorch Lightning."""

__version__ = "0.1.0"
