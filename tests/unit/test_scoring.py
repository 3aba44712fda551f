"""THE scoring path (aad.scoring) and the commands that score with it: evaluate's arguments,
predict and explain."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from aad.checkpoints import checkpoint_metadata
from aad.data.audio import load_waveform
from aad.models import LSTMAE
from aad.scoring import SCORES, ErrorCovariance, pool_frames, score_loader

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def module() -> LSTMAE:
    torch.manual_seed(0)
    module = LSTMAE(score="mean", features={"features": ["mel"], "mel": {"n_mels": 8}}, window=4,
                    hidden_size=8, latent_size=2, dropout=0.5, num_layers=2)  # fmt: skip
    loader = [{"waveform": torch.randn(4, 4000), "target": torch.zeros(4, dtype=torch.long)}]
    module.fit_normalizer(loader)
    return module


def _batches(n_batches: int = 3, size: int = 2) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "waveform": torch.randn(size, 4000, generator=generator),
            "target": torch.tensor([0, 1][:size]),
            "index": torch.arange(i * size, (i + 1) * size),
        }
        for i in range(n_batches)
    ]


def test_score_loader_is_deterministic_in_eval_mode_and_restores_the_mode(module):
    module.train()  # dropout on: scoring must switch it off, then back on
    batches = _batches()
    first = score_loader(module, batches, keep_frames=True)
    assert module.training
    module.eval()
    second = score_loader(module, batches)
    assert not module.training
    np.testing.assert_array_equal(first.score, second.score)
    assert first.score.dtype == np.float64 and second.frame_scores is None
    assert first.index.tolist() == list(range(6)) and first.target.tolist() == [0, 1] * 3
    assert len(first.frame_scores) == 6 and first.frame_scores[0].shape == (8,)
    means = [frames.mean() for frames in first.frame_scores]
    np.testing.assert_allclose(means, first.score, rtol=1e-6)
    module.train()
    with torch.no_grad():
        noisy = [module.score(b).clip_scores for b in batches for _ in range(2)]
    assert not torch.equal(noisy[0], noisy[1])  # what eval mode protects against


def test_score_loader_raises_on_an_empty_loader_and_restores_the_mode(module):
    module.train()
    with pytest.raises(ValueError, match="nothing to score: the data loader yielded no batches"):
        score_loader(module, [])
    assert module.training

    def broken():
        yield from _batches(1)
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        score_loader(module, broken())
    assert module.training


def test_score_uses_the_features_a_batch_carries(module):
    module.eval()
    batch = _batches(1)[0]
    direct = module.score(dict(batch))
    prepared = module.on_after_batch_transfer(dict(batch), 0)
    assert "features" in prepared
    torch.testing.assert_close(module.score(prepared).clip_scores, direct.clip_scores)
    assert module.score({"features": torch.zeros(2, 9, 8)}).frame_scores.shape == (2, 9)


def test_pool_frames():
    frames = torch.tensor([[1.0, 5.0, 3.0, 2.0], [0.0, 0.0, 4.0, 8.0]])
    assert SCORES == ("mean", "topk", "mahalanobis")
    torch.testing.assert_close(pool_frames(frames, "mean", 2), torch.tensor([2.75, 3.0]))
    torch.testing.assert_close(pool_frames(frames, "mahalanobis", 2), torch.tensor([2.75, 3.0]))
    torch.testing.assert_close(pool_frames(frames, "topk", 2), torch.tensor([4.0, 6.0]))
    torch.testing.assert_close(pool_frames(frames, "topk", 1), torch.tensor([5.0, 8.0]))
    torch.testing.assert_close(pool_frames(frames, "topk", 99), torch.tensor([2.75, 3.0]))


def _rows(n: int, dim: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, dim, generator=generator)
    return torch.randn(n, dim, generator=generator) @ mixing + shift


def test_error_covariance_is_the_mahalanobis_distance_of_each_domain():
    source, target = _rows(200, 3, 0), _rows(150, 3, 1, shift=4.0)
    covariance = ErrorCovariance(3, shrinkage=0.0)
    covariance.update(torch.cat([source, target]), torch.tensor([-1] * 200 + [1] * 150))
    covariance.finalize()
    assert covariance.fitted and covariance.count.tolist() == [200, 150]
    queries = torch.cat([_rows(3, 3, 2), _rows(3, 3, 5, shift=4.0)])
    expected = []
    for rows in (source, target):
        rows = rows.double().numpy()
        centred = queries.double().numpy() - rows.mean(0)
        inverse = np.linalg.inv(np.cov(rows, rowvar=False, bias=True))
        expected.append(np.einsum("nd,de,ne->n", centred, inverse, centred))
    distances = covariance(queries[None])  # (B, T, D) -> (B, T)
    assert distances.shape == (1, 6)
    np.testing.assert_allclose(distances[0].numpy(), np.minimum(*expected), rtol=1e-4)
    assert set(np.argmin(expected, axis=0)) == {0, 1}  # each domain is the nearer for some
    state = covariance.state_dict()
    assert set(state) == {"mean", "precision", "count"}  # what a checkpoint carries


def test_error_covariance_shrinks_and_falls_back_to_the_source_domain():
    rows = _rows(50, 4, 3)
    shrunk = ErrorCovariance(4, shrinkage=0.5)
    shrunk.update(rows, torch.zeros(50, dtype=torch.long))
    shrunk.finalize()
    assert shrunk.count.tolist() == [50, 0]  # no target clips: the source statistics serve
    torch.testing.assert_close(shrunk.precision[1], shrunk.precision[0])
    covariance = np.cov(rows.double().numpy(), rowvar=False, bias=True)
    target = 0.5 * covariance + 0.5 * np.trace(covariance) / 4 * np.eye(4)
    np.testing.assert_allclose(shrunk.precision[0].numpy(), np.linalg.inv(target), rtol=1e-4)


def test_error_covariance_sums_add_up_across_ranks():
    rows, domains = _rows(40, 3, 4), torch.tensor([0, 1] * 20)
    whole = ErrorCovariance(3)
    whole.update(rows, domains)
    whole.finalize()
    halves = [ErrorCovariance(3), ErrorCovariance(3)]
    halves[0].update(rows[:15], domains[:15])
    halves[1].update(rows[15:], domains[15:])
    summed = tuple(a + b for a, b in zip(halves[0].sums(), halves[1].sums(), strict=True))
    halves[0].finalize(summed)
    torch.testing.assert_close(halves[0].precision, whole.precision)
    torch.testing.assert_close(halves[0].mean, whole.mean)
    whole.reset()
    assert float(whole.sums()[0].sum()) == 0 and whole.fitted  # fitted statistics stay


def test_error_covariance_errors():
    with pytest.raises(ValueError, match=r"shrinkage must be in \[0, 1\], got 1.5"):
        ErrorCovariance(3, shrinkage=1.5)
    covariance = ErrorCovariance(3)
    with pytest.raises(RuntimeError, match="mahalanobis score used before its statistics"):
        covariance(torch.zeros(1, 2, 3))
    covariance.update(torch.zeros(1, 3), torch.zeros(1, dtype=torch.long))
    with pytest.raises(ValueError, match="fewer than 2 normal error vectors to fit on"):
        covariance.finalize()


# --------------------------------------------------------------------------- the commands
def test_evaluate_arguments_and_dispatch(monkeypatch):
    import aad.cli.compare
    import aad.cli.predict
    from aad.cli.evaluate import data_overrides, evaluate_parser, main

    parser = evaluate_parser()
    argv = ["--ckpt", "m.ckpt", "--data.root", "/d", "--data.batch_size=4", "--out", "x"]
    assert parser.parse_args(argv).ckpt == "m.ckpt"
    assert data_overrides(parser, argv) == {"root": "/d", "batch_size": 4}
    for bad in (["--data.root", "/d"], ["--ckpt", "m", "--data.bogus", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)
    calls = []
    monkeypatch.setattr(aad.cli.compare, "main", lambda args: calls.append(("compare", args)))
    monkeypatch.setattr(aad.cli.predict, "main", lambda args: calls.append(("predict", args)))
    main(["--compare", "configs/compare.yaml", "--data.root", "/d", "--out", "o"])
    main(["--out", "o", "--compare=my.yaml"])
    main(["predict", "--ckpt", "m.ckpt", "a.wav"])
    assert calls == [
        ("compare", ["--config", "configs/compare.yaml", "--data.root", "/d", "--out", "o"]),
        ("compare", ["--config", "my.yaml", "--out", "o"]),
        ("predict", ["--ckpt", "m.ckpt", "a.wav"]),
    ]


def test_predict_arguments():
    from aad.cli.predict import predict_parser

    args = predict_parser().parse_args(["--ckpt", "m.ckpt", "a.wav", "dir/", "--data.channel", "1"])
    assert (args.ckpt, args.inputs, args.data.channel) == ("m.ckpt", ["a.wav", "dir/"], 1)


def test_predict_takes_files_between_options():
    """The pre-redesign CLI took this (its test): files before and after --data options."""
    from aad.cli.predict import files_last, predict_parser

    argv = ["--ckpt", "m.ckpt", "a.wav", "--data.root", "/d", "--data.batch_size=4", "b.wav"]
    args = predict_parser().parse_args(files_last(argv))
    assert (args.inputs, args.data.root, args.data.batch_size) == (["a.wav", "b.wav"], "/d", 4)


def test_predict_and_explain_load_clips_as_the_training_data(module, tmp_path):
    """A model trained on channel "mean": predict and explain mix a two-channel file's
    channels (and score it whole), as evaluate.py loads test clips; --data.* overrides win."""
    from aad.cli.explain import explain_clips
    from aad.cli.predict import predict_files

    module.eval().threshold.fill_(0.5)
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "aad": checkpoint_metadata(module),
                "datamodule_hyper_parameters": {"root": str(tmp_path), "channel": "mean",
                                                "clip_seconds": 0.25}}, ckpt)  # fmt: skip
    rng = np.random.default_rng(0)
    clip = tmp_path / "stereo.wav"
    stereo = np.stack([rng.normal(size=8000), 5 * rng.normal(size=8000)], axis=1)
    sf.write(clip, (0.1 * stereo).astype(np.float32), 16000, subtype="FLOAT")
    sf.write(tmp_path / "short.wav", np.full((800, 2), 0.1, np.float32), 16000)  # 0.05 s

    def expected(channel) -> float:
        waveform = load_waveform(clip, 16000, channel=channel)  # whole clip: 0.5 s
        return float(module.score({"waveform": waveform[None]}).clip_scores[0])

    out = tmp_path / "predict"
    with pytest.warns(UserWarning, match=r"1 of 2 file\(s\) not scored:\n.*short\.wav"):
        predicted = predict_files(ckpt, [str(clip), str(tmp_path / "short.wav")], out, {}, "cpu")
    assert predicted["score"][0] == pytest.approx(expected("mean"), rel=1e-6)
    assert predicted["status"].tolist()[0] == "ok"
    assert predicted["decision"][0] == int(expected("mean") > 0.5)
    assert predicted["status"][1].startswith("error: too short") and predicted["decision"][1] == -1
    assert predicted.attrs["failures"] == 1 and (out / "predictions.csv").is_file()
    explained = explain_clips(ckpt, [str(clip)], tmp_path / "explain", {}, "cpu")
    assert explained["score"][0] == pytest.approx(expected("mean"), rel=1e-6)
    assert (tmp_path / "explain" / "explain_stereo.png").stat().st_size > 1000
    overridden = predict_files(ckpt, [str(clip)], out, {"channel": 1}, "cpu")
    assert overridden["score"][0] == pytest.approx(expected(1), rel=1e-6)
    assert expected(1) != pytest.approx(expected("mean"), rel=1e-3)
