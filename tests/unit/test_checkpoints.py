"""Checkpoints: safe loading (weights_only), trusted model classes, round trips, discovery."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch

from aad.checkpoints import (
    CheckpointError,
    load_module,
    read_checkpoint,
    recorded_best,
    resolve_checkpoints,
    trust_module,
    trusted_model_class,
)
from aad.models import LSTMAE, AnomalyModule

SMALL = {"features": ["mel"], "mel": {"n_mels": 16}}


class _Evil:
    """Unpickling this runs a shell command (the attack weights_only=True refuses)."""

    def __init__(self, witness: Path) -> None:
        self.witness = witness

    def __reduce__(self):
        return (os.system, (f"touch {self.witness}",))


def _saved(tmp_path: Path, module: AnomalyModule | None = None) -> Path:
    module = module or LSTMAE(score="mean", features=SMALL, window=4, hidden_size=8, latent_size=2)
    module.normalizer.update(torch.randn(20, module.input_dim))
    module.normalizer.finalize()
    module.threshold.fill_(1.5)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, max_epochs=0)  # fmt: skip
    trainer.strategy.connect(module)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return path


def test_a_checkpoint_carrying_a_pickled_payload_is_refused_without_running_it(tmp_path):
    witness = tmp_path / "PWNED"
    path = tmp_path / "evil.ckpt"
    torch.save({"aad": {"format_version": 2}, "payload": _Evil(witness)}, path)
    with pytest.raises(CheckpointError, match=r"pickled objects .*GLOBAL posix.system"):
        load_module(path)
    assert not witness.exists()
    torch.load(path, weights_only=False)  # the same file does run its payload when trusted
    assert witness.exists()


def test_round_trip_gives_identical_scores(tmp_path):
    path = _saved(tmp_path)
    module, checkpoint = load_module(path)
    assert checkpoint["aad"]["threshold"] == 1.5 and float(module.threshold) == 1.5
    original = LSTMAE(score="mean", features=SMALL, window=4, hidden_size=8, latent_size=2)
    original.load_state_dict(read_checkpoint(path)["state_dict"])
    batch = {"waveform": torch.randn(2, 16000) * 0.1, "target": torch.zeros(2, dtype=torch.long)}
    expected = original.eval().score(batch).clip_scores
    torch.testing.assert_close(module.score(batch).clip_scores, expected, rtol=0, atol=0)


def test_only_aad_anomaly_modules_are_imported(tmp_path, monkeypatch):
    with pytest.raises(CheckpointError, match="outside aad: refused"):
        trusted_model_class("subprocess.Popen")
    with pytest.raises(CheckpointError, match="is not an aad AnomalyModule"):
        trusted_model_class("aad.thresholds.fit_threshold")
    with pytest.raises(CheckpointError, match="cannot be imported"):
        trusted_model_class("aad.models.NoSuchModel")
    path = _saved(tmp_path)
    checkpoint = read_checkpoint(path)
    checkpoint["aad"]["model_class"] = "os.system"
    torch.save(checkpoint, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="'os.system', outside aad"):
        load_module(tmp_path / "foreign.ckpt")


def test_a_user_model_outside_aad_loads_once_trusted(tmp_path):
    class MyModel(LSTMAE):
        pass

    MyModel.__module__ = __name__
    MyModel.__qualname__ = "MyModel"
    globals()["MyModel"] = MyModel
    path = _saved(tmp_path, MyModel(features=SMALL, window=4, hidden_size=8, latent_size=2))
    with pytest.raises(CheckpointError, match="trust_module"):
        load_module(path)
    trust_module(MyModel)
    module, _ = load_module(path)
    assert type(module) is MyModel


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "truncated, corrupt, or not a checkpoint"),
     (b"not a checkpoint at all", "truncated, corrupt, or not a checkpoint")],
)  # fmt: skip
def test_damaged_files_say_so(tmp_path, content, message):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_module(path)


def test_foreign_and_old_checkpoints(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not an aad checkpoint"):
        load_module(tmp_path / "foreign.ckpt")
    torch.save({"aad": {"format_version": 1, "aad_version": "0.0.1"}}, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="checkpoint format 1 .* reads format 2 only"):
        load_module(tmp_path / "old.ckpt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_module(tmp_path / "missing.ckpt")


def test_resolve_checkpoints_takes_the_best_that_lightning_recorded(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("best-epoch01.ckpt", "best-epoch03.ckpt"):
        torch.save({"x": 1}, folder / name)
    callbacks = {"ModelCheckpoint{'monitor': 'val/loss'}": {
        "best_model_path": "/elsewhere/checkpoints/best-epoch01.ckpt"}}  # fmt: skip
    torch.save({"callbacks": callbacks}, folder / "last.ckpt")
    assert recorded_best(folder) == folder / "best-epoch01.ckpt"
    assert resolve_checkpoints([str(tmp_path / "run")]) == [folder / "best-epoch01.ckpt"]
    (folder / "last.ckpt").unlink()
    assert resolve_checkpoints([str(tmp_path)]) == [folder / "best-epoch03.ckpt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .ckpt files"):
        resolve_checkpoints([str(tmp_path / "empty")])
