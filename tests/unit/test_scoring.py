"""The one scoring path: score_batch, score_dataloader, scores_frame."""

import numpy as np
import pandas as pd
import pytest
import torch

from aad.data.manifest import ClipRecord
from aad.models import LSTMAE
from aad.scoring import SCORE_COLUMNS, score_batch, score_dataloader, scores_frame


@pytest.fixture(scope="module")
def module():
    module = LSTMAE(
        features={"features": ["mel"], "mel": {"n_mels": 8}},
        window=4,
        hidden_size=8,
        latent_size=2,
        dropout=0.5,
    )
    loader = [{"waveform": torch.randn(4, 4000), "target": torch.zeros(4, dtype=torch.long)}]
    module.fit_normalizer(loader)
    return module


def _batches(n_batches=3, size=2):
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "waveform": torch.randn(size, 4000, generator=generator),
            "target": torch.tensor([0, 1][:size]),
            "index": torch.arange(i * size, (i + 1) * size),
        }
        for i in range(n_batches)
    ]


def test_score_batch_prefers_precomputed_features(module):
    module.eval()
    batch = _batches(1)[0]
    direct = score_batch(module, batch)
    with_features = score_batch(module, module.on_after_batch_transfer(dict(batch), 0))
    assert torch.equal(direct.clip_scores, with_features.clip_scores)
    fake = {"features": torch.zeros(2, 9, 8)}
    assert score_batch(module, fake).frame_errors.shape == (2, 9)


def test_score_dataloader_is_deterministic_eval_mode_and_restores_mode(module):
    module.train()  # dropout on: scoring must still switch it off
    batches = _batches()
    first = score_dataloader(module, batches, keep_frames=True)
    second = score_dataloader(module, batches)
    assert module.training
    assert np.array_equal(first["score"], second["score"])
    assert first["index"].tolist() == list(range(6))
    assert first["target"].tolist() == [0, 1] * 3
    assert first["frame_errors"].shape[0] == 6
    assert np.allclose(first["frame_errors"].mean(1), first["score"], rtol=1e-6)


def test_score_dataloader_empty(module):
    with pytest.raises(ValueError, match="nothing to score"):
        score_dataloader(module, [])


def test_scores_frame_columns_and_decisions():
    records = [
        ClipRecord(
            f"/d/{i}.wav", "dcase2020", "fan", "id_00", "test", "anomaly" if i % 2 else "normal"
        )
        for i in range(4)
    ]
    frame = scores_frame(records, np.array([3, 0, 1]), np.array([0.9, 0.1, 0.6]), threshold=0.5)
    assert tuple(frame.columns) == SCORE_COLUMNS
    assert frame["path"].tolist() == ["/d/3.wav", "/d/0.wav", "/d/1.wav"]
    assert frame["target"].tolist() == [1, 0, 1]
    assert frame["decision"].tolist() == [1, 0, 1]
    assert isinstance(frame, pd.DataFrame)


def test_evaluate_arguments():
    from aad.cli import _parse_evaluate_args

    args, overrides = _parse_evaluate_args(
        [
            "predict",
            "--ckpt",
            "m.ckpt",
            "a.wav",
            "--data.root",
            "/d",
            "--data.batch_size=4",
            "b.wav",
        ]  # fmt: skip
    )
    assert args.predict and args.inputs == ["a.wav", "b.wav"] and args.ckpt == ["m.ckpt"]
    assert overrides == {"root": "/d", "batch_size": 4}
    with pytest.raises(SystemExit):
        _parse_evaluate_args(["a.wav"])  # no --ckpt


def test_compare_is_passed_through(monkeypatch):
    import aad.compare
    from aad.cli import evaluate_main

    calls = []
    monkeypatch.setattr(
        aad.compare, "main", lambda path, overrides: calls.append((path, overrides))
    )
    evaluate_main(["--compare", "configs/compare.yaml", "--data.root", "/d", "--seed", "1"])
    assert calls == [("configs/compare.yaml", ["--data.root", "/d", "--seed", "1"])]


def test_resolve_checkpoints_prefers_best(tmp_path):
    from aad.cli import resolve_checkpoints

    folder = tmp_path / "fan" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("best-epoch03.ckpt", "last.ckpt"):
        (folder / name).write_bytes(b"")
    assert resolve_checkpoints([str(tmp_path)]) == [folder / "best-epoch03.ckpt"]
    assert resolve_checkpoints([str(folder / "last.ckpt")]) == [folder / "last.ckpt"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no .ckpt files"):
        resolve_checkpoints([str(tmp_path / "empty")])


def test_resolve_checkpoints_takes_the_best_that_lightning_recorded(tmp_path):
    """With save_top_k > 1 the newest best-* file is not the best: last.ckpt's
    ModelCheckpoint state names it."""
    from aad.cli import resolve_checkpoints

    folder = tmp_path / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    for name in ("best-epoch01.ckpt", "best-epoch03.ckpt"):
        (folder / name).write_bytes(b"")
    state = {"best_model_path": f"elsewhere/run/{'best-epoch01.ckpt'}"}
    torch.save(
        {"callbacks": {"ModelCheckpoint{'monitor': 'val/loss'}": state}}, folder / "last.ckpt"
    )
    assert resolve_checkpoints([str(tmp_path)]) == [folder / "best-epoch01.ckpt"]


def test_predict_and_explain_load_clips_as_the_training_data(module, tmp_path):
    """A model trained on channel "mean" with 0.25 s clips: predict and explain must score a
    two-channel, 0.5 s file as evaluate.py would (channels mixed, cropped to 0.25 s), not
    channel 0 of the whole file."""
    import soundfile as sf

    from aad.cli import explain_clips, predict_files
    from aad.data.audio import load_waveform

    module.eval().threshold.fill_(0.5)
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "aad": module.checkpoint_metadata(),
        "datamodule_hyper_parameters": {
            "root": str(tmp_path),
            "channel": "mean",
            "clip_seconds": 0.25,
        },
    }
    ckpt = tmp_path / "m.ckpt"
    torch.save(checkpoint, ckpt)
    rng = np.random.default_rng(0)
    stereo = np.stack([rng.normal(size=8000), 5 * rng.normal(size=8000)], axis=1)
    clip = tmp_path / "stereo.wav"
    sf.write(clip, (0.1 * stereo).astype(np.float32), 16000)
    waveform = load_waveform(clip, 16000, channel="mean", num_samples=4000)
    expected = float(score_batch(module, {"waveform": waveform[None]}).clip_scores[0])

    predicted = predict_files(ckpt, [str(clip)], torch.device("cpu"), None, {})
    assert predicted["score"][0] == pytest.approx(expected, rel=1e-6)
    explained = explain_clips(ckpt, [str(clip)], torch.device("cpu"), tmp_path / "explain")
    assert explained["score"][0] == pytest.approx(expected, rel=1e-6)
    # --data.* overrides still win: channel 1 of the whole file
    whole = load_waveform(clip, 16000, channel=1)
    expected_1 = float(score_batch(module, {"waveform": whole[None]}).clip_scores[0])
    overrides = {"channel": 1, "clip_seconds": None}
    predicted = predict_files(ckpt, [str(clip)], torch.device("cpu"), None, overrides)
    assert predicted["score"][0] == pytest.approx(expected_1, rel=1e-6)
