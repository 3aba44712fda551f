"""Models: windowing, architectures, THE score (mean / topk / mahalanobis), calibration,
checkpoints written by a Lightning fit, constructor checks and the NaN-loss stop."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from aad.checkpoints import CheckpointError, checkpoint_metadata, load_module
from aad.data.datamodule import MachineSoundDataModule
from aad.engine.fit import fit_model, make_trainer
from aad.models import DCASEAE, LSTMAE, NonFiniteLossError
from aad.models.dcase_ae.torch_model import DenseAutoencoder
from aad.models.lstm_ae.torch_model import (
    LSTMAutoencoder,
    from_windows,
    to_windows,
    window_starts,
)
from aad.scoring import score_loader
from aad.thresholds import fit_threshold

SMALL_FEATURES = {"features": ["mel"], "mel": {"n_mels": 16}}
TINY = {"features": ["mel"], "mel": {"n_mels": 6}}


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny(**kwargs) -> LSTMAE:
    torch.manual_seed(0)
    return LSTMAE(
        **{
            "features": TINY,
            "window": 4,
            "hidden_size": 8,
            "latent_size": 2,
            "score": "mean",
            **kwargs,
        }
    )


def _fitted(module, waveform):
    module.fit_normalizer([{"waveform": waveform, "target": torch.zeros(len(waveform))}])
    return module.eval()


def _batches(n_batches: int = 3, size: int = 4, samples: int = 4000, seed: int = 0) -> list:
    """Batches of noise clips: targets 0, 0, 1, 0, ...; domains 0, 1, 0, 1, ..."""
    generator = torch.Generator().manual_seed(seed)
    return [
        {
            "waveform": 0.1 * torch.randn(size, samples, generator=generator),
            "target": torch.tensor([int(j % 3 == 2) for j in range(size)]),
            "index": torch.arange(i * size, (i + 1) * size),
            "domain": torch.arange(size) % 2,
        }
        for i in range(n_batches)
    ]


def test_window_starts_cover_every_frame():
    assert window_starts(10, 4, 4) == [0, 4, 6]
    assert window_starts(8, 4, 4) == [0, 4]
    assert window_starts(3, 4, 4) == [0]
    assert window_starts(10, 4, 2) == [0, 2, 4, 6]


def test_windows_round_trip():
    features = torch.randn(2, 10, 3)
    windows, starts = to_windows(features, 4, 4)
    assert windows.shape == (2 * 3, 4, 3)
    assert torch.allclose(from_windows(windows[..., 0], starts, 2, 10), features[..., 0])
    assert torch.allclose(from_windows(windows, starts, 2, 10), features)


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
    widths = [(m.in_features, m.out_features) for m in model.modules()
              if isinstance(m, torch.nn.Linear)]  # fmt: skip
    assert widths == [(640, 128), (128, 128), (128, 128), (128, 128), (128, 8),
                      (8, 128), (128, 128), (128, 128), (128, 128), (128, 640)]  # fmt: skip
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) == 9


def test_dcase_module_uses_640_stacked_inputs():
    module = DCASEAE(normalize=False).eval()
    assert module.input_dim == 640
    cfg = module.feature_config
    assert (cfg.mel.n_mels, cfg.stack_frames, cfg.stft.n_fft, cfg.stft.hop_length) == (
        128, 5, 1024, 512)  # fmt: skip
    assert cfg.mel.log == "dcase" and tuple(cfg.features) == ("mel",)
    output = module.score({"waveform": torch.randn(2, 16000)})
    assert output.frame_scores.shape == (2, 32 - 4) and output.clip_scores.shape == (2,)
    assert module.encode(module.prepare_features(torch.randn(2, 16000))).shape == (2, 8)


def test_mean_score_is_the_mean_squared_frame_error():
    module = _fitted(LSTMAE(score="mean", features=SMALL_FEATURES, window=8, hidden_size=8,
                            latent_size=4),
                     torch.randn(3, 16000))  # fmt: skip
    waveform = torch.randn(3, 16000)
    batch = module.on_after_batch_transfer({"waveform": waveform}, 0)
    features = batch["features"]
    assert features.shape == (3, 32, 16) and features.mean().abs() < 0.2  # normalised
    output = module.score(batch)
    with torch.no_grad():
        errors = module.reconstruction_errors(features)
    assert errors.shape == (3, 32, 16)
    torch.testing.assert_close(output.frame_scores, errors.square().mean(-1))
    torch.testing.assert_close(output.clip_scores, output.frame_scores.mean(1))
    alone = module.score({"waveform": waveform[:1]})  # a clip alone scores as in a batch
    torch.testing.assert_close(alone.clip_scores, output.clip_scores[:1], atol=1e-6, rtol=0)
    assert module.encode(features).shape == (3, 4)


@pytest.mark.parametrize(("top_k", "k"), [(3, 3), (1, 1), (10_000, None)])
def test_topk_score_is_the_mean_of_the_k_largest_frames(top_k, k):
    waveform = 0.1 * torch.randn(2, 8000)
    mean = _fitted(_tiny(), waveform)
    topk = _fitted(_tiny(score="topk", top_k=top_k), waveform)
    frames = mean.score({"waveform": waveform}).frame_scores
    output = topk.score({"waveform": waveform})
    torch.testing.assert_close(output.frame_scores, frames)
    largest = np.sort(frames.numpy(), axis=1)[:, ::-1][:, :k]  # k=None: every frame
    np.testing.assert_allclose(output.clip_scores.numpy(), largest.mean(1), rtol=1e-6)


def _numpy_mahalanobis(errors, domains, test_errors, used=(0, 1), shrinkage=0.1):
    """Squared Mahalanobis distance of each test frame's error under each domain's shrunk
    covariance of the normal frames' errors, the minimum over the ``used`` domains."""
    distances = []
    for domain in used:
        rows = np.concatenate([e for e, d in zip(errors, domains, strict=True) if d == domain])
        mean = rows.mean(0)
        covariance = np.cov(rows, rowvar=False, bias=True)
        scale = np.trace(covariance) / len(covariance)
        shrunk = (1 - shrinkage) * covariance + shrinkage * scale * np.eye(len(covariance))
        centred = test_errors - mean
        distances.append(np.einsum("btd,de,bte->bt", centred, np.linalg.inv(shrunk), centred))
    return np.min(distances, axis=0)


def test_mahalanobis_score_matches_numpy_with_the_min_over_domains():
    module = _fitted(_tiny(score="mahalanobis"), 0.1 * torch.randn(4, 4000))
    fit_batches = _batches()
    module.calibrate(fit_batches)
    errors, domains = [], []
    with torch.no_grad():
        for batch in fit_batches:
            normal = batch["target"] == 0
            found = module.reconstruction_errors(module.prepare_features(batch["waveform"]))
            errors += list(found[normal].double().numpy())
            domains += batch["domain"][normal].tolist()
        test = _batches(1, size=3, seed=1)[0]
        test_errors = module.reconstruction_errors(module.prepare_features(test["waveform"]))
    expected = _numpy_mahalanobis(errors, domains, test_errors.double().numpy())
    output = module.score(test)
    np.testing.assert_allclose(output.frame_scores.numpy(), expected, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(output.clip_scores.numpy(), expected.mean(1), rtol=1e-4)
    source_only = _numpy_mahalanobis(errors, domains, test_errors.double().numpy(), used=(0,))
    assert not np.allclose(source_only, expected, rtol=1e-2)  # the target domain matters


def test_calibrate_fits_the_threshold_on_the_normal_clips():
    module = _fitted(_tiny(threshold_method="percentile", threshold_quantile=0.75),
                     0.1 * torch.randn(4, 4000)).train()  # fmt: skip
    batches = _batches()
    value = module.calibrate(batches)
    assert module.training  # the mode is restored
    scored = score_loader(module, batches)
    normal = scored.score[scored.target == 0]
    assert len(normal) == 9 and value == fit_threshold(normal, "percentile", 0.75)
    assert float(module.threshold) == value
    louder = [{**b, "waveform": b["waveform"] * (1 + 9 * b["target"][:, None])} for b in batches]
    assert module.calibrate(louder) == value  # anomalous clips never move it
    gamma = _fitted(_tiny(), 0.1 * torch.randn(4, 4000))
    normal = score_loader(gamma, batches).score[scored.target == 0]
    assert gamma.calibrate(batches) == pytest.approx(fit_threshold(normal), rel=1e-12)
    anomalies = [{**b, "target": torch.ones_like(b["target"])} for b in batches]
    with pytest.raises(ValueError, match="no normal clips to fit the decision threshold on"):
        module.calibrate(anomalies)


def test_normaliser_needs_normal_clips_and_ignores_anomalies():
    module = LSTMAE(score="mean", features=SMALL_FEATURES, window=8, hidden_size=8)
    loader = [{"waveform": torch.randn(2, 8000), "target": torch.ones(2, dtype=torch.long)}]
    with pytest.raises(ValueError, match="no normal clips in the training data"):
        module.fit_normalizer(loader)
    normal = torch.randn(2, 8000) * 0.1
    mixed = torch.cat([normal, torch.randn(2, 8000) * 10])
    module.fit_normalizer([{"waveform": mixed, "target": torch.tensor([0, 0, 1, 1])}])
    expected = module.features(normal).mean((0, 1))
    assert torch.allclose(module.normalizer.mean, expected, atol=1e-4)
    assert module.normalizer.fitted


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"score": "median"}, r"score must be one of \('mean', 'topk', 'mahalanobis'\), got 'median'"),
     ({"top_k": 0}, "top_k must be >= 1, got 0"),
     ({"threshold_method": "otsu"}, r"threshold_method must be one of \('gamma', 'percentile'\)"),
     ({"threshold_quantile": 1.0}, r"threshold_quantile must be in \(0, 1\), got 1.0"),
     ({"threshold_quantile": 0}, r"threshold_quantile must be in \(0, 1\), got 0"),
     ({"learning_rate": 0}, "learning_rate must be > 0"),
     ({"window": 0}, "window must be >= 1 frame, got 0"),
     ({"train_stride": -4}, r"train_stride must be >= 1 frame \(null = window\), got -4")],
)  # fmt: skip
def test_bad_arguments_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTMAE(**{"score": "mean", "features": SMALL_FEATURES, **kwargs})
    if "window" not in kwargs and "train_stride" not in kwargs:
        with pytest.raises(ValueError, match=message):
            DCASEAE(**kwargs)


def test_nan_loss_names_the_step():
    module = LSTMAE(score="mean", features=SMALL_FEATURES, window=8, hidden_size=8)
    batch = {"features": torch.full((2, 16, 16), math.nan), "target": torch.zeros(2)}
    with pytest.raises(NonFiniteLossError, match=r"training loss is nan at epoch 0, global "
                       r"step 0, batch 3; stopping\. .*last\.ckpt.*learning_rate"):  # fmt: skip
        module.training_step(batch, 3)
    assert issubclass(NonFiniteLossError, FloatingPointError)


def _data(root: Path) -> MachineSoundDataModule:
    data = MachineSoundDataModule(root=str(root), machine_type="fan", machine_id="id_00",
                                  clip_seconds=2.0, batch_size=4)  # fmt: skip
    (group,) = data.groups()
    return data.for_group(group)


def _quiet_trainer(root: Path, **kwargs) -> L.Trainer:
    return make_trainer({"max_epochs": 1, "default_root_dir": str(root), "logger": False,
                         "enable_progress_bar": False, "enable_model_summary": False,
                         "num_sanity_val_steps": 0, **kwargs})  # fmt: skip


def test_a_checkpoint_of_other_features_or_format_is_refused(tmp_path: Path) -> None:
    module = _fitted(_tiny(), 0.1 * torch.randn(2, 4000))

    def saved(**meta) -> Path:
        path = tmp_path / f"{len(list(tmp_path.iterdir()))}.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                    "aad": {**checkpoint_metadata(module), **meta}}, path)  # fmt: skip
        return path

    assert float(load_module(saved())[0].normalizer.mean[0]) == float(module.normalizer.mean[0])
    with pytest.raises(
        CheckpointError,
        match=r"feature config mismatch: .* trained with feature "
        r"signature 0123456789ab .*fields differing after rebuilding: none",
    ):
        load_module(saved(feature_signature="0123456789ab"))
    with pytest.raises(CheckpointError, match=r"has checkpoint format 99 .*reads format 2 only"):
        load_module(saved(format_version=99))


@pytest.mark.parametrize("score", ["mean", "topk", "mahalanobis"])
def test_a_fitted_checkpoint_holds_its_threshold_and_round_trips(
    synthetic_root: Path, tmp_path: Path, score: str
) -> None:
    data = _data(synthetic_root)
    L.seed_everything(0)
    module = LSTMAE(features=SMALL_FEATURES, window=8, hidden_size=8, latent_size=4,
                    score=score, top_k=5)  # fmt: skip
    trainer = _quiet_trainer(tmp_path)
    fit_model(module, data, trainer)
    path = Path(trainer.checkpoint_callback.best_model_path)
    assert path.is_file()
    loaded, checkpoint = load_module(path)
    threshold = float(module.threshold)
    assert math.isfinite(threshold) and threshold > 0
    assert checkpoint["aad"]["threshold"] == float(loaded.threshold) == threshold
    assert checkpoint["aad"]["score"] == loaded.score_name == score
    assert checkpoint["datamodule_hyper_parameters"]["machine_type"] == "fan"
    assert (loaded.error_covariance is not None) == (score == "mahalanobis")
    scored = [score_loader(m, data.test_dataloader()).score for m in (module, loaded)]
    assert len(scored[0]) == 12 and np.isfinite(scored[0]).all()
    np.testing.assert_array_equal(scored[1], scored[0])


def test_test_step_logs_the_auc_of_the_scores(synthetic_root: Path) -> None:
    """trainer.test scores with THE score: test/auc and test/pauc agree with aad.metrics."""
    from aad.metrics import binary_metrics

    data = _data(synthetic_root)
    module = _fitted(LSTMAE(score="mean", features=SMALL_FEATURES, window=8, hidden_size=8,
                            latent_size=4),
                     next(iter(data.train_dataloader()))["waveform"])  # fmt: skip
    trainer = _quiet_trainer(synthetic_root, enable_checkpointing=False)
    (logged,) = trainer.test(module, datamodule=data, verbose=False)
    scored = score_loader(module, data.test_dataloader())
    expected = binary_metrics(scored.target, scored.score)
    assert logged["test/auc"] == pytest.approx(expected["auc"], abs=1e-6)
    assert logged["test/pauc"] == pytest.approx(expected["pauc"], abs=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_bf16_training_scores_in_float32(synthetic_root: Path, tmp_path: Path) -> None:
    from aad.engine.fit import auto_precision

    assert auto_precision("auto") == "bf16-mixed"
    data = _data(synthetic_root)
    trainer = _quiet_trainer(tmp_path, accelerator="gpu", devices=1)
    assert trainer.precision == "bf16-mixed"
    module = fit_model(
        LSTMAE(score="mean", features=SMALL_FEATURES, window=8, hidden_size=8), data, trainer
    )
    assert torch.isfinite(module.threshold)
    waveform = 0.1 * torch.randn(2, 32000)
    on_gpu = module.to("cuda").score({"waveform": waveform.cuda()})
    assert on_gpu.clip_scores.dtype == torch.float32 and on_gpu.clip_scores.is_cuda
    on_cpu = module.cpu().score({"waveform": waveform})
    torch.testing.assert_close(on_gpu.clip_scores.cpu(), on_cpu.clip_scores, rtol=1e-2, atol=1e-4)
