"""Export: one file from raw PCM to scores matches aad's own scoring (evaluate.py, score_clip).

Float32 tolerance of every parity check: ``|exported - aad| <= 1e-4 * max|aad| + 1e-6``
(measured gaps are about 1e-7 relative; ONNX's STFT and LSTM kernels differ from torch's in
the last bits). A tiny LSTM-AE is trained once with ``aad.cli.train.main``; the other models
are built directly with a fitted normaliser and calibrated threshold (parity does not need
good weights).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from aad.cli import evaluate_main
from aad.cli.predict import score_clip
from aad.data.audio import load_waveform
from aad.export import load_exported, load_scorer
from aad.export.exporter import export_module
from aad.export.graph import NotExportableError, build_graph
from aad.export.runtime import prepare_waveform
from aad.models import DCASEAE, LSTMAE, AnomalyModule, load_module

RTOL = 1e-4


def assert_parity(got: np.ndarray, want: np.ndarray) -> None:
    want = np.asarray(want, dtype=np.float64)
    tolerance = RTOL * float(np.max(np.abs(want))) + 1e-6
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=0, atol=tolerance)


def needs_onnx() -> None:
    for name in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(name)


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def trained(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny LSTM-AE on the synthetic fans (2 s clips), its best checkpoint."""
    from aad.cli import main

    out = tmp_path_factory.mktemp("export_run")
    threads = torch.get_num_threads()
    try:
        main(["--data.root", str(synthetic_root), "--data.machine_type", "fan",
              "--trainer.default_root_dir", str(out), "--data.clip_seconds", "2.0",
              "--data.batch_size", "8", "--model.init_args.window", "16",
              "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--torch_threads", "1",
              "--evaluate", "false"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    (best,) = (out / "lightning_logs" / "version_0" / "checkpoints").glob("best*")
    return best


@pytest.fixture(scope="module")
def evaluated(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """``evaluate.py --ckpt`` on the checkpoint's test clips: its scores.csv."""
    out = tmp_path_factory.mktemp("evaluate")
    evaluate_main(["--ckpt", str(trained), "--out", str(out), "--plots", "false"])
    return pd.read_csv(out / "scores.csv")


def _clips(table: pd.DataFrame) -> np.ndarray:
    return np.stack([load_waveform(p, 16000, 0, None).numpy() for p in table["path"]])


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_matches_evaluate(fmt: str, trained: Path, evaluated: pd.DataFrame, tmp_path):
    if fmt == "onnx":
        needs_onnx()
    evaluate_main(["export", "--ckpt", str(trained), "--format", fmt, "--out", str(tmp_path)])
    meta = json.loads((tmp_path / "model.json").read_text())
    model = load_exported(tmp_path)
    assert model.path.name == f"model{'.onnx' if fmt == 'onnx' else '.pt'}"
    assert meta["runtime"] == {"onnx": "onnxruntime", "torchscript": "torch.jit"}[fmt]
    checkpoint = torch.load(trained, weights_only=True)
    assert meta["threshold"] == checkpoint["aad"]["threshold"]
    assert meta["feature_signature"] == checkpoint["aad"]["feature_signature"]
    assert (meta["sample_rate"], meta["clip_seconds"], meta["machine_type"]) == (16000, 2.0, "fan")
    assert (meta["score"], meta["aad_version"]) == (checkpoint["aad"]["score"],
                                                    checkpoint["aad"]["aad_version"])  # fmt: skip
    assert meta["model_class"].endswith("LSTMAE") and meta["parity"]["max_relative_gap"] < RTOL
    scores = model.score(_clips(evaluated))
    assert scores.frame_scores.shape == (len(evaluated), 63)
    assert_parity(scores.clip_scores, evaluated["score"].to_numpy())
    assert_parity(scores.frame_scores.mean(axis=1), evaluated["score"].to_numpy())
    margin = np.abs(evaluated["score"].to_numpy() - meta["threshold"]) > 1e-4
    decisions = model.decide(scores.clip_scores)
    assert np.array_equal(decisions[margin], evaluated["decision"].to_numpy()[margin])


def _fitted(module: AnomalyModule, synthetic_root: Path) -> AnomalyModule:
    """Normaliser on normal training clips, score statistics and threshold on others."""
    train = sorted((synthetic_root / "fan" / "train").glob("*.wav"))
    waves = torch.stack([load_waveform(p, 16000, 0, 32000) for p in train])
    module.eval()
    module.normalizer.update(module.features(waves[:8]))
    module.normalizer.finalize()
    batch = {
        "waveform": waves[8:],
        "target": torch.zeros(len(waves) - 8, dtype=torch.long),
        "index": torch.arange(len(waves) - 8),
        "domain": torch.zeros(len(waves) - 8, dtype=torch.long),
    }
    module.calibrate([batch])
    return module


MODELS = [
    ("onnx", DCASEAE, "mean"),
    ("onnx", DCASEAE, "topk"),
    ("onnx", DCASEAE, "mahalanobis"),
    ("torchscript", DCASEAE, "mahalanobis"),
    ("torchscript", LSTMAE, "topk"),
    ("torchscript", LSTMAE, "mahalanobis"),
]


@pytest.mark.parametrize(("fmt", "cls", "score"), MODELS)
def test_models_and_scores_match_score_clip(fmt, cls, score, synthetic_root: Path, tmp_path):
    if fmt == "onnx":
        needs_onnx()
    torch.manual_seed(0)
    kwargs = {"window": 16, "top_k": 8} if cls is LSTMAE else {"top_k": 8}
    module = _fitted(cls(score=score, **kwargs), synthetic_root)
    result = export_module(module, fmt, tmp_path, clip_seconds=2.0, machine_type="fan")
    model = load_exported(result.meta_path)
    assert model.meta.score == score and model.threshold == float(module.threshold)
    test = sorted((synthetic_root / "fan" / "test").glob("*_id_00_*.wav"))[::3]
    got = model.score(np.stack([load_waveform(p, 16000).numpy() for p in test]))
    want = [score_clip(module, p, 0) for p in test]
    assert_parity(got.clip_scores, np.array([float(w.clip_scores[0]) for w in want]))
    assert_parity(got.frame_scores, np.stack([w.frame_scores[0].numpy() for w in want]))
    longer = torch.from_numpy(np.tile(load_waveform(test[0], 16000).numpy(), 2)[:52800])
    expected = module.score({"waveform": longer[None]})  # another clip length: 3.3 s
    assert_parity(model.score(longer.numpy()).frame_scores, expected.frame_scores.numpy())


def test_graph_is_the_module_scoring_at_several_lengths(synthetic_root: Path):
    torch.manual_seed(1)
    module = _fitted(LSTMAE(score="mean", window=16), synthetic_root)
    graph = build_graph(module)
    for samples in (7681, 16000, 32000, 40000):  # 16 frames (one window) and up
        waves = torch.randn(2, samples) * 0.1
        clip_scores, frame_scores = graph(waves)
        expected = module.score({"waveform": waves})
        assert torch.equal(frame_scores, expected.frame_scores)
        assert torch.equal(clip_scores, expected.clip_scores)


def test_checkpoint_scorer_matches_export(trained: Path, tmp_path: Path):
    module, _ = load_module(trained)
    export_module(module, "torchscript", tmp_path, clip_seconds=2.0)
    pcm = (np.random.default_rng(0).standard_normal((2, 32000)) * 3000).astype(np.int16)
    from_checkpoint = load_scorer(trained).score(pcm).clip_scores
    assert_parity(load_scorer(tmp_path / "model.pt").score(pcm).clip_scores, from_checkpoint)


class Unsupported(AnomalyModule):
    def frame_scores(self, features, batch):  # noqa: ANN001, ANN201
        return features.mean(dim=-1)


def test_unsupported_model_names_itself():
    with pytest.raises(NotExportableError, match=r"test_export\.Unsupported is not yet exportable"):
        build_graph(Unsupported())
    untrained = LSTMAE(score="mean")
    with pytest.raises(NotExportableError, match="normaliser was never fitted"):
        build_graph(untrained)


def test_runtime_input_checks():
    pcm = np.array([16384, -32768], dtype=np.int16)
    assert prepare_waveform(pcm).tolist() == [[0.5, -1.0]]
    with pytest.raises(ValueError, match="shorter than the 100 samples"):
        prepare_waveform(np.zeros(50, np.float32), min_samples=100)
    with pytest.raises(ValueError, match=r"NaN/Inf samples in batch rows \[1\]"):
        prepare_waveform(np.array([[0.0, 0.1], [np.nan, 0.0]]))
    with pytest.raises(TypeError, match="dtype int32 not supported"):
        prepare_waveform(np.zeros(10, np.int32))


def test_detector_exports_its_embedding_front_end(tmp_path: Path, capsys):
    from aad.cli.export import main as export_main
    from aad.detectors import KNNDetector
    from aad.embeddings import DEFAULT_FEATURES, embedding_signature
    from aad.features import FeatureExtractor, clip_embedding

    extractor = FeatureExtractor(DEFAULT_FEATURES)
    waves = torch.from_numpy(np.random.default_rng(0).standard_normal((8, 16000)) * 0.1).float()
    rows = clip_embedding(extractor.forward_parts(waves)).numpy()
    signature = embedding_signature(DEFAULT_FEATURES, "pooled", ("mean", "std"))
    KNNDetector(n_neighbors=2).fit(rows, feature_signature=signature).save(tmp_path / "knn.npz")
    result = export_main(
        [
            "--detector",
            str(tmp_path / "knn.npz"),
            "--format",
            "torchscript",
            "--out",
            str(tmp_path / "out"),
            "--clip_seconds",
            "1.0",
        ]
    )
    assert (
        "NOT EXPORTED: KNNDetector (aad.detectors.distance.KNNDetector)" in capsys.readouterr().err
    )
    assert result.meta.kind == "embedding" and result.meta.detector["exported"] is False
    model = load_exported(result.meta_path)
    assert_parity(model.embed(waves.numpy()), rows)
    with pytest.raises(ValueError, match="computes clip embeddings only"):
        model.score(waves.numpy())
    KNNDetector(n_neighbors=2).fit(rows, feature_signature="latent:lstm:abc").save(
        tmp_path / "latent.npz"
    )
    with pytest.raises(NotExportableError, match="latent front-end is not exportable"):
        export_main(["--detector", str(tmp_path / "latent.npz"), "--out", str(tmp_path / "x")])


def test_export_cli_needs_one_source(tmp_path: Path):
    from aad.cli.export import main as export_main

    with pytest.raises(SystemExit):
        export_main(["--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        export_main(["--ckpt", "x.ckpt", "--format", "tflite"])
