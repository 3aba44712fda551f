"""Fit a model programmatically, and finish checkpoints with their decision threshold.

Used by ``train.py`` (after LightningCLI's fit) and by the compare command::

    from aad.models import LSTMAE
    from aad.training import fit_module
    module = fit_module(LSTMAE(window=32), datamodule, {"max_epochs": 10})

Latent clip embeddings of a fitted module: ``aad.embeddings.compute_embeddings(...,
source="latent", module=module)``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from aad.models.base import AnomalyModule, check_checkpoint_metadata

DEFAULT_TRAINER_KWARGS: dict[str, Any] = {
    "max_epochs": 10,
    "accelerator": "auto",
    "devices": 1,
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "deterministic": True,
}


def auto_precision(accelerator: str | None = "auto") -> str:
    """``"bf16-mixed"`` when training will run on a CUDA GPU, else ``"32-true"``."""
    on_gpu = accelerator in (None, "auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if on_gpu else "32-true"


def threshold_dataloader(datamodule: L.LightningDataModule) -> Any:
    """A loader over the normal training clips for threshold fitting (unshuffled if offered).

    Uses ``datamodule.threshold_dataloader()`` when defined, else an unshuffled loader over
    ``datamodule.dataset("fit")`` (MachineSoundDataModule), else ``train_dataloader()``.
    """
    method = getattr(datamodule, "threshold_dataloader", None)
    if callable(method):
        return method()
    dataset = getattr(datamodule, "dataset", None)
    if callable(dataset):
        return DataLoader(
            dataset("fit"),
            batch_size=getattr(datamodule, "batch_size", 16),
            shuffle=False,
            num_workers=getattr(datamodule, "num_workers", 0),
        )
    return datamodule.train_dataloader()


def fit_module(
    module: AnomalyModule,
    datamodule: L.LightningDataModule,
    trainer_kwargs: dict[str, Any] | None = None,
    *,
    ckpt_path: str | None = None,
) -> AnomalyModule:
    """Train ``module`` on ``datamodule``, fit its threshold, return it in eval mode.

    ``trainer_kwargs`` override :data:`DEFAULT_TRAINER_KWARGS` (no logger, no checkpoints,
    no progress bar; precision bf16-mixed on GPU). When checkpointing is on, the best
    checkpoint's weights are loaded back and every checkpoint gets its threshold.
    """
    kwargs = {**DEFAULT_TRAINER_KWARGS, **(trainer_kwargs or {})}
    kwargs.setdefault("precision", auto_precision(kwargs.get("accelerator")))
    trainer = L.Trainer(**kwargs)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    if trainer.checkpoint_callback is not None and trainer.checkpoint_callback.best_model_path:
        finalize_checkpoints(trainer, module, datamodule)
    else:
        module.fit_threshold(threshold_dataloader(datamodule))
    return module.eval()


def checkpoint_paths(trainer: L.Trainer) -> list[Path]:
    """Best, then last checkpoint of the trainer's ModelCheckpoint (existing files only)."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return []
    paths = [getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", "")]
    unique = dict.fromkeys(Path(p) for p in paths if p and Path(p).is_file())
    return list(unique)


def finalize_checkpoints(
    trainer: L.Trainer, module: AnomalyModule, datamodule: L.LightningDataModule
) -> Path | None:
    """Give the best and last checkpoints their threshold, from their own weights.

    For each checkpoint: load its weights into ``module``, score the normal training clips
    in eval mode, fit the threshold and write it into the file (state_dict buffer and
    ``aad`` metadata). Runs on global rank 0 (other ranks wait). Leaves ``module`` holding
    the best checkpoint's weights and threshold. Returns the best checkpoint path.
    """
    paths = checkpoint_paths(trainer)
    if trainer.is_global_zero:
        loader = threshold_dataloader(datamodule)
        for path in reversed(paths):  # last first, so the module ends with the best weights
            checkpoint = torch.load(path, map_location="cpu", weights_only=False)
            check_checkpoint_metadata(checkpoint, str(path))
            module.load_state_dict(checkpoint["state_dict"])
            value = module.fit_threshold(loader)
            checkpoint["state_dict"]["threshold"] = module.threshold.detach().cpu().clone()
            checkpoint["aad"]["threshold"] = value
            _atomic_save(checkpoint, path)
        if not paths:
            module.fit_threshold(loader)
    trainer.strategy.barrier("aad-finalize-checkpoints")
    if not trainer.is_global_zero and paths:
        checkpoint = torch.load(paths[0], map_location="cpu", weights_only=False)
        module.load_state_dict(checkpoint["state_dict"])
    return paths[0] if paths else None


def _atomic_save(checkpoint: dict[str, Any], path: Path) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    os.close(handle)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
