"""The one fit path of Lightning models: ``train.py``, ``compare`` and the benchmarks use it.

    trainer = make_trainer({"max_epochs": 10, "callbacks": [...]})
    module = fit_model(LSTMAE(), datamodule.for_group(group), trainer)

Validation (held-out normal clips, or the training clips when too few), early stopping and
checkpoints are whatever the trainer carries (``configs/trainer/default.yaml`` and
``configs/callbacks/default.yaml`` for both commands). Every checkpoint already holds its
threshold (fitted at each validation epoch end); after fitting, the module is given the best
checkpoint's weights, and nothing is rewritten.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import Any

import lightning as L
import torch

from aad.checkpoints import read_checkpoint
from aad.models.base import AnomalyModule

LIGHTNING_NOISE = (
    r".*isinstance\(treespec, LeafSpec\).*",  # Lightning 2.6 on torch 2.11
    r".*overridden `on_after_batch_transfer`.*",  # by design: features on the device
    r".*smaller than the logging interval.*",
    r".*does not have many workers.*",  # num_workers=0 is the default for small data sets
    r".*was deprecated in v4\.49\.0.*",  # jsonargparse API that LightningCLI still calls
    r".*skip_none parameter was deprecated.*",
    r".*Checkpoint directory .* exists and is not empty.*",
)


def quiet_lightning(banners: bool = False) -> None:
    """Hide Lightning's known-harmless warnings (and, unless ``banners``, its INFO lines
    such as "GPU available"), so aad's own lines stay readable."""
    for pattern in LIGHTNING_NOISE:
        warnings.filterwarnings("ignore", pattern)
    if not banners:
        for name in ("lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).setLevel(logging.WARNING)


def auto_precision(accelerator: str | None = "auto") -> str:
    """``"bf16-mixed"`` when training will run on a CUDA GPU, else ``"32-true"``."""
    on_gpu = accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu else "32-true"


def make_trainer(kwargs: dict[str, Any]) -> L.Trainer:
    """A Trainer from keyword arguments; ``precision`` None/missing = :func:`auto_precision`."""
    kwargs = dict(kwargs)
    if kwargs.get("precision") is None:
        kwargs["precision"] = auto_precision(kwargs.get("accelerator"))
    return L.Trainer(**kwargs)


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best checkpoint the trainer's ModelCheckpoint recorded, else its last one."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    for path in (
        getattr(callback, "best_model_path", ""),
        getattr(callback, "last_model_path", ""),
    ):
        if path:
            return str(path)
    return None


def fit_model(
    module: AnomalyModule,
    datamodule: L.LightningDataModule,
    trainer: L.Trainer,
    *,
    ckpt_path: str | None = None,
) -> AnomalyModule:
    """Train ``module``; return it in eval mode with the best checkpoint's weights and
    threshold (or, without checkpoints, its last weights, calibrated on the validation clips).
    """
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if trainer.interrupted:
        raise KeyboardInterrupt("training was interrupted")
    best = best_checkpoint(trainer)
    if best:
        module.load_state_dict(read_checkpoint(best)["state_dict"])
    if not math.isfinite(float(module.threshold)):
        module.calibrate(datamodule.val_dataloader())
    return module.eval()
