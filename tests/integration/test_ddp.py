"""Lightning DDP on CPU (gloo, 2 processes): train.py trains, the normaliser statistics are
those of the whole training set, checkpoints get their threshold, test scores every clip once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from aad.checkpoints import load_module
from aad.data.datamodule import MachineSoundDataModule

REPO = Path(__file__).resolve().parents[2]


def test_ddp_two_cpu_processes(synthetic_root: Path, tmp_path: Path):
    command = [
        sys.executable, str(REPO / "train.py"),
        "--data.root", str(synthetic_root), "--data.machine_type", "fan",
        "--data.clip_seconds", "2.0", "--data.batch_size", "4",
        "--model.init_args.window", "16", "--model.init_args.hidden_size", "16",
        "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
        "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path),
        "--trainer.enable_progress_bar", "false", "--torch_threads", "1",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distributed_backend=gloo" in result.stderr + result.stdout
    folder = tmp_path / "lightning_logs" / "version_0"
    (best,) = (folder / "checkpoints").glob("best*.ckpt")
    module, _ = load_module(best)
    assert torch.isfinite(module.threshold)

    # normaliser fitted over both ranks' shards == one pass over every training clip
    datamodule = MachineSoundDataModule(root=str(synthetic_root), machine_type="fan",
                                        clip_seconds=2.0, batch_size=4)  # fmt: skip
    datamodule.setup("fit")  # the one group: fan, ids pooled
    reference, _ = load_module(best)
    reference.normalizer.count.zero_()
    reference.fit_normalizer(datamodule.train_dataloader())
    assert int(module.normalizer.count) == int(reference.normalizer.count)
    assert torch.allclose(module.normalizer.mean, reference.normalizer.mean, atol=1e-4)
    assert torch.allclose(module.normalizer.std, reference.normalizer.std, rtol=1e-4)

    # the test clips are scored once, by rank 0, through the engine's scoring path
    scores = pd.read_csv(folder / "test" / "scores.csv")
    assert scores["path"].is_unique and len(scores) == 24
