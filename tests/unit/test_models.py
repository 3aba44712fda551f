"""Torch models, windowing, the LightningModules' feature/score/checkpoint plumbing."""

import math

import lightning as L
import pytest
import torch

from aad.models import DCASEAE, LSTMAE, CheckpointError, load_module
from aad.models.dcase_ae.torch_model import DenseAutoencoder
from aad.models.lstm_ae.torch_model import (
    LSTMAutoencoder,
    from_windows,
    to_windows,
    window_starts,
)
from aad.scoring import score_batch

SMALL_FEATURES = {"features": ["mel"], "mel": {"n_mels": 16}}


def test_window_starts_cover_every_frame():
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(8, 4, 4) == [0, 4]
    assert window_starts(3, 4, 4) == [0]
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"train_stride": 0}, {"train_stride": -4}])
def test_bad_windowing_is_refused_at_construction(kwargs):
    with pytest.raises(ValueError, match="must be >= 1 frame"):
        LSTMAE(features=SMALL_FEATURES, **kwargs)


def test_windows_round_trip():
    features = torch.randn(2, 10, 3)
    windows, starts = to_windows(features, 4, 4)
    assert windows.shape == (2 * 3, 4, 3)
    per_frame = windows[..., 0]
    assert torch.allclose(from_windows(per_frame, starts, 2, 10), features[..., 0])


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_autoencoder_shapes(bidirectional):
    model = LSTMAutoencoder(
        8, hidden_size=12, latent_size=4, num_layers=2, bidirectional=bidirectional, dropout=0.1
    )
    windows = torch.randn(5, 7, 8)
    assert model(windows).shape == (5, 7, 8)
    assert model.encode(windows).shape == (5, 4)


def test_dense_autoencoder_is_the_dcase_baseline():
    model = DenseAutoencoder(640)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    widths = [(m.in_features, m.out_features) for m in linears]
    assert widths == [
        (640, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 8),
        (8, 128),
        (128, 128),
        (128, 128),
        (128, 128),
        (128, 640),
    ]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == 9


def _fitted(module, waveform):
    with torch.no_grad():
        module.normalizer.reset()
        module.normalizer.update(module.features(waveform))
        module.normalizer.finalize()
    return module


def test_lstm_module_scores_are_mean_frame_errors():
    module = LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8, latent_size=4).eval()
    waveform = torch.randn(3, 16000)
    _fitted(module, waveform)
    batch = module.on_after_batch_transfer({"waveform": waveform}, 0)
    features = batch["features"]
    assert features.shape == (3, 32, 16)
    assert features.mean().abs() < 0.2  # normalised with the statistics just set
    output = score_batch(module, batch)
    assert output.frame_errors.shape == (3, 32)
    assert torch.allclose(output.clip_scores, output.frame_errors.mean(1))
    # scoring a clip alone gives the same score as in a batch
    alone = score_batch(module, {"waveform": waveform[:1]})
    assert torch.allclose(alone.clip_scores, output.clip_scores[:1], atol=1e-6)
    assert module.encode(features).shape == (3, 4)


def test_dcase_module_uses_640_stacked_inputs():
    module = DCASEAE(normalize=False).eval()
    assert module.input_dim == 640
    cfg = module.feature_config
    assert (cfg.mel.n_mels, cfg.stack_frames, cfg.stft.n_fft, cfg.stft.hop_length) == (
        128,
        5,
        1024,
        512,
    )
    assert cfg.mel.log == "dcase" and tuple(cfg.features) == ("mel",)
    output = score_batch(module, {"waveform": torch.randn(2, 16000)})
    assert output.frame_errors.shape == (2, 32 - 4)


def test_normaliser_needs_normal_clips():
    module = LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8)
    loader = [{"waveform": torch.randn(2, 8000), "target": torch.ones(2, dtype=torch.long)}]
    with pytest.raises(ValueError, match="no normal clips in the training data"):
        module.fit_normalizer(loader)


def test_normaliser_fit_ignores_anomalies():
    module = LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8)
    normal = torch.randn(2, 8000) * 0.1
    loader = [
        {
            "waveform": torch.cat([normal, torch.randn(2, 8000) * 10]),
            "target": torch.tensor([0, 0, 1, 1]),
        }
    ]
    module.fit_normalizer(loader)
    expected = module.features(normal).mean((0, 1))
    assert torch.allclose(module.normalizer.mean, expected, atol=1e-4)
    assert module.normalizer_fitted


def test_nan_loss_names_the_step():
    module = LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8)
    batch = {"features": torch.full((2, 16, 16), math.nan), "target": torch.zeros(2)}
    with pytest.raises(FloatingPointError, match=r"training loss is nan at epoch 0, global step 0"):
        module.training_step(batch, 0)


def _save(module, path, **aad_overrides):
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "aad": {**module.checkpoint_metadata(), **aad_overrides},
    }
    torch.save(checkpoint, path)
    return path


def test_checkpoint_round_trip(tmp_path):
    module = _fitted(
        LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8, latent_size=4),
        torch.randn(2, 16000),
    ).eval()
    module.threshold.fill_(0.75)
    loaded, _ = load_module(_save(module, tmp_path / "m.ckpt"))
    assert float(loaded.threshold) == 0.75
    assert torch.equal(loaded.normalizer.mean, module.normalizer.mean)
    waveform = torch.randn(2, 16000)
    assert torch.equal(
        score_batch(loaded, {"waveform": waveform}).clip_scores,
        score_batch(module, {"waveform": waveform}).clip_scores,
    )


def test_checkpoint_errors(tmp_path):
    module = LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_module(tmp_path / "missing.ckpt")
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint .*corrupt"):
        load_module(corrupt)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": module.state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not an aad checkpoint"):
        load_module(foreign)
    with pytest.raises(CheckpointError, match="has checkpoint format 99 .*reads format 1"):
        load_module(_save(module, tmp_path / "future.ckpt", format_version=99))
    with pytest.raises(CheckpointError, match="feature config mismatch"):
        load_module(_save(module, tmp_path / "sig.ckpt", feature_signature="0123456789ab"))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_training_scores_in_float32():
    from aad.training import auto_precision, fit_module

    assert auto_precision("auto") == "bf16-mixed"

    class _Data(torch.utils.data.Dataset):
        def __len__(self):
            return 8

        def __getitem__(self, i):
            return {"waveform": torch.randn(16000), "target": torch.tensor(0),
                    "index": torch.tensor(i)}  # fmt: skip

    class _DataModule(L.LightningDataModule):
        sample_rate = 16000

        def train_dataloader(self):
            return torch.utils.data.DataLoader(_Data(), batch_size=4)

    module = fit_module(LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8), _DataModule(),
                        {"max_epochs": 1, "accelerator": "gpu"})  # fmt: skip
    assert module.device.type == "cuda" and torch.isfinite(module.threshold)
    output = score_batch(module, {"waveform": torch.randn(2, 16000, device="cuda")})
    assert output.clip_scores.dtype == torch.float32


def test_labelled_validation_data_logs_val_auc_and_pauc(synthetic_root):
    """With anomalies in the validation loader, val/auc and val/pauc are logged (and agree
    with aad.metrics on the same scores); val/loss stays the mean normal-clip score."""
    from aad.data.datamodule import MachineSoundDataModule
    from aad.metrics import binary_metrics
    from aad.scoring import score_dataloader

    dm = MachineSoundDataModule(
        root=str(synthetic_root), machine_type="fan", clip_seconds=2.0, batch_size=8
    )
    dm.setup("fit")
    module = LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8, latent_size=4)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(
        module, train_dataloaders=dm.train_dataloader(), val_dataloaders=dm.test_dataloader()
    )
    logged = trainer.callback_metrics
    assert {"val/loss", "val/auc", "val/pauc"} <= set(logged)
    scored = score_dataloader(module, dm.test_dataloader())
    expected = binary_metrics(scored["target"], scored["score"])
    assert float(logged["val/auc"]) == pytest.approx(expected["auc"], abs=1e-6)
    assert float(logged["val/pauc"]) == pytest.approx(expected["pauc"], abs=1e-6)
    normal = scored["target"] == 0
    assert float(logged["val/loss"]) == pytest.approx(scored["score"][normal].mean(), rel=1e-5)
