"""The machine-id classifier through train.py, evaluate.py, predict and --explain.

Small on purpose (one machine type, 3 ids x 8 training clips of 2 s, a narrow network, one
CPU thread). The AUC floors are real: a classifier that cannot tell its ids apart fails them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from aad.checkpoints import read_checkpoint
from aad.cli import evaluate_main, main
from aad.cli.explain import explain_clips
from aad.cli.predict import predict_files
from aad.data import MachineSoundDataModule
from aad.data.audio import load_waveform
from aad.data.synthetic import generate_dataset
from aad.engine.fit import fit_model, make_trainer
from aad.export.graph import NotExportableError
from aad.metrics import binary_metrics
from aad.models import MachineIDClassifier, load_module
from aad.scoring import score_loader

SMALL = [
    "--model", "configs/model/classifier.yaml",
    "--model.init_args.channels", "[16, 32, 32]",
    "--model.init_args.embedding_dim", "32",
    "--model.init_args.crops_per_clip", "8",
    "--data.clip_seconds", "2.0",
    "--data.batch_size", "8",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--torch_threads", "1",
]  # fmt: skip
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _one_torch_thread(monkeypatch: pytest.MonkeyPatch):
    """One CPU thread (small convolutions; the fastest on a busy 2-core machine), restored."""
    monkeypatch.chdir(REPO)  # SMALL names the model config relative to the repository
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _data(tmp: Path, ids: tuple[str, ...]) -> Path:
    return generate_dataset(tmp, machine_types=("fan",), machine_ids=ids, n_train=8,
                            n_test_normal=4, n_test_anomaly=4, duration_s=2.0, seed=0)  # fmt: skip


def _train(root: Path, out: Path, *extra: str) -> Path:
    main(["--data.root", str(root), "--trainer.default_root_dir", str(out), *SMALL, *extra])
    (best,) = (out / "lightning_logs/version_0/checkpoints").glob("best*")
    return best


@pytest.fixture(scope="module")
def ids_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3 ids, knn score (its bank's size is set by the data: the hardest round trip)."""
    root = _data(tmp_path_factory.mktemp("ids"), ("id_00", "id_02", "id_04"))
    out = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    try:
        best = _train(root, out, "--model.init_args.score", "knn", "--trainer.max_epochs", "8")
    finally:
        torch.set_num_threads(threads)
    return root, best


def _test_scores(best: Path) -> pd.DataFrame:
    return pd.read_csv(best.parents[1] / "test" / "scores.csv")


def test_trains_per_type_over_ids_and_beats_chance(ids_run):
    root, best = ids_run
    scores = _test_scores(best)
    assert set(scores["machine_id"]) == {"id_00", "id_02", "id_04"}
    auc = binary_metrics(scores["target"], scores["score"])["auc"]
    assert auc >= 0.8, auc
    checkpoint = read_checkpoint(best)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["class_names"] == ["id_00", "id_02", "id_04"]
    assert hparams["label_scheme"] == "ids" and checkpoint["aad"]["score"] == "knn"
    state = checkpoint["state_dict"]
    assert state["model.head.weight"].shape[0] == 3
    assert state["bank"].shape == (24, 32) and state["bank_classes"].tolist() == sorted(
        state["bank_classes"].tolist()  # training clips in path order: id_00 .. id_04
    )
    assert np.isfinite(checkpoint["aad"]["threshold"])


def test_checkpoint_round_trip_and_calibration_outside_lightning(ids_run):
    root, best = ids_run
    module, checkpoint = load_module(best)
    data = MachineSoundDataModule(root=str(root), clip_seconds=2.0, batch_size=8)
    data.setup("test")
    scored = score_loader(module, data.test_dataloader())
    expected = _test_scores(best).set_index("path")["score"]
    paths = [data.records("test")[i].path for i in scored.index]
    assert np.allclose(scored.score, expected[paths], rtol=1e-6, atol=0)  # CSV: 8 digits
    threshold = float(module.threshold)
    bank = module.bank.clone()
    module.calibrate(data.loader("fit"))  # as at the checkpoint's last validation start
    torch.testing.assert_close(module.bank, bank)
    assert float(module.threshold) == pytest.approx(threshold, rel=1e-5)


def test_every_score_works_from_the_checkpoint_alone(ids_run):
    root, best = ids_run
    data = MachineSoundDataModule(root=str(root), clip_seconds=2.0, batch_size=8)
    data.setup("test")
    module, _ = load_module(best)  # its banks hold every score's statistics
    for name in ("nll", "knn", "mahalanobis"):
        module.score_name = name
        scored = score_loader(module, data.test_dataloader())
        assert np.isfinite(scored.score).all()
        assert binary_metrics(scored.target, scored.score)["auc"] >= 0.7, name


def test_mahalanobis_vectors_are_embedding_and_standardised_input_statistics(ids_run):
    """The default Mahalanobis score, recomputed outside the module: each crop's embedding
    with its normalised log-mel mean and std over the frames appended, every column
    standardised on all training crops, Ledoit-Wolf per id (benchmarks/classifier_inputs.py)."""
    from aad.models.classifier.augment import sliding_crops
    from aad.models.classifier.scoring import MahalanobisScorer

    root, best = ids_run
    module, _ = load_module(best)
    module.score_name = "mahalanobis"
    assert module.hparams.input_statistics and module.maha_means.shape[-1] == 32 + 2 * 64
    data = MachineSoundDataModule(root=str(root), clip_seconds=2.0, batch_size=8)
    data.setup("fit")
    names = list(module.hparams.class_names)

    def raw_vectors(path: str) -> torch.Tensor:
        crops = sliding_crops(load_waveform(path, 16000, 0, 32000)[None], 16000, 8000)[0]
        features = module.prepare_features(crops)
        with torch.no_grad():
            embedding = module.model(features)
        return torch.cat([embedding, features.mean(dim=1), features.std(dim=1)], 1).double()

    train = data.records("fit")
    vectors = [raw_vectors(r.path) for r in train]
    rows = torch.cat(vectors)
    centre, scale = rows.mean(dim=0), rows.std(dim=0)
    classes = torch.tensor([names.index(r.machine_id) for r in train]).repeat_interleave(3)
    scorer = MahalanobisScorer().fit((rows - centre) / scale, classes)
    test = data.records("test")[:6]
    means = torch.stack([((raw_vectors(r.path) - centre) / scale).mean(dim=0) for r in test])
    want = scorer.score(means, torch.tensor([names.index(r.machine_id) for r in test]))
    pcm = torch.stack([load_waveform(r.path, 16000, 0, 32000) for r in test])
    got = module.score({"waveform": pcm, "class_index": torch.tensor(
        [names.index(r.machine_id) for r in test])}).clip_scores  # fmt: skip
    torch.testing.assert_close(got, want.float(), rtol=2e-3, atol=1e-3)


def test_checkpoint_from_before_input_statistics_scores_as_it_did(ids_run, tmp_path: Path):
    """A checkpoint written before ``input_statistics`` (no hyperparameter, Mahalanobis
    statistics of the embedding alone) and before attribute classes (no id mask) loads and
    scores with the embedding alone."""
    import inspect

    root, best = ids_run
    checkpoint = read_checkpoint(best)
    accepted = inspect.signature(MachineIDClassifier).parameters
    hparams = {k: v for k, v in checkpoint["hyper_parameters"].items() if k in accepted}
    hparams.update(score="mahalanobis", input_statistics=False)
    old = MachineIDClassifier(**hparams)
    weights = {k: v for k, v in checkpoint["state_dict"].items()
               if not k.startswith(("maha_", "vector_"))}  # fmt: skip
    old.load_state_dict(weights, strict=False)
    data = MachineSoundDataModule(root=str(root), clip_seconds=2.0, batch_size=8)
    data.setup("fit")
    old.calibrate(data.loader("fit"))
    old.eval()
    state = {k: v for k, v in old.state_dict().items()
             if not k.startswith(("vector_", "id_log_mask"))}  # both added since  # fmt: skip
    assert state["maha_means"].shape[-1] == 32
    written = {k: v for k, v in checkpoint["hyper_parameters"].items() if k != "input_statistics"}
    legacy = dict(checkpoint, state_dict=state, hyper_parameters=dict(written, score="mahalanobis"))
    torch.save(legacy, tmp_path / "legacy.ckpt")
    loaded, _ = load_module(tmp_path / "legacy.ckpt")
    assert loaded.hparams.input_statistics is False
    loaded.score_name = "mahalanobis"  # the checkpoint's recorded score is knn
    batch = next(iter(data.test_dataloader()))
    torch.testing.assert_close(loaded.score(batch).clip_scores, old.score(batch).clip_scores)
    loaded.score_name = old.score_name = "nll"  # its id mask rebuilt from the hyperparameters
    torch.testing.assert_close(loaded.score(batch).clip_scores, old.score(batch).clip_scores)


def test_evaluate_predict_and_explain(ids_run, tmp_path: Path):
    root, best = ids_run
    evaluate_main(["--ckpt", str(best), "--out", str(tmp_path / "eval"), "--plots", "false"])
    from_test = _test_scores(best)
    from_evaluate = pd.read_csv(tmp_path / "eval" / "scores.csv")
    assert np.array_equal(from_evaluate["score"], from_test["score"])
    clips = from_test["path"].tolist()[:2]
    predicted = predict_files(best, clips, tmp_path / "predict")
    assert (predicted["status"] == "ok").all()
    # predict does not know a loose clip's id: it is scored against its nearest id
    assert (predicted["score"].to_numpy() <= from_test["score"].to_numpy()[:2] + 1e-5).all()
    summary = explain_clips(best, clips[:1], tmp_path / "explain")
    frames = pd.read_csv(tmp_path / "explain" / f"explain_{Path(clips[0]).stem}.csv")
    assert len(frames) == 3 and frames["time_s"].tolist() == [0.5, 1.0, 1.5]  # 1 s crops, 0.5 s hop
    assert frames["frame_score"].mean() == pytest.approx(summary["score"][0], rel=1e-4)
    assert (tmp_path / "explain" / f"explain_{Path(clips[0]).stem}.png").is_file()


@pytest.mark.parametrize(("fmt", "score"), [("onnx", "mahalanobis"), ("torchscript", "nll")])
def test_export_scores_one_id_as_evaluate_does(ids_run, fmt: str, score: str, tmp_path: Path):
    """Issue 13: the exported classifier (crops, log-mel, CNN, score inside) gives the
    module's scores for the id it was exported for, and the nearest-id scores without one."""
    from aad.export import load_exported, load_scorer
    from aad.export.exporter import export_module

    if fmt == "onnx":
        for name in ("onnx", "onnxscript", "onnxruntime"):
            pytest.importorskip(name)
    root, best = ids_run
    module, _ = load_module(best)
    module.score_name = score
    clips = sorted((root / "fan" / "test").glob("*_id_02_*.wav"))
    pcm = torch.stack([load_waveform(p, 16000, 0, None) for p in clips])
    for machine_id, index in (("id_02", 1), (None, -1)):
        out = tmp_path / f"{machine_id}"
        result = export_module(module, fmt, out, clip_seconds=2.0, machine_id=machine_id)
        assert result.meta.machine_id == machine_id and result.meta.min_samples == 16000
        got = load_exported(result.meta_path).score(pcm.numpy())
        classes = torch.full((len(clips),), index, dtype=torch.long)
        want = module.score({"waveform": pcm, "class_index": classes})
        scale = float(want.clip_scores.abs().max())
        np.testing.assert_allclose(got.clip_scores, want.clip_scores, atol=1e-4 * scale + 1e-6)
        np.testing.assert_allclose(got.frame_scores, want.frame_scores, atol=1e-4 * scale + 1e-6)
    if score == "mahalanobis":  # watch --ckpt: the checkpoint scores a stream's nearest id
        scorer = load_scorer(best)
        scorer.module.score_name = score  # trained with knn; every score's statistics inside
        from_checkpoint = scorer.score(pcm.numpy()).clip_scores
        np.testing.assert_allclose(from_checkpoint, want.clip_scores, rtol=1e-6)
    with pytest.raises(NotExportableError, match="'id_09' is not one the classifier"):
        export_module(module, fmt, tmp_path / "x", clip_seconds=2.0, machine_id="id_09")
    module.score_name = "knn"
    with pytest.raises(NotExportableError, match="'knn' score is not exportable"):
        export_module(module, fmt, tmp_path / "y", clip_seconds=2.0)


def test_single_id_trains_on_pseudo_classes(tmp_path: Path):
    root = _data(tmp_path / "data", ("id_00",))
    best = _train(root, tmp_path / "run", "--model.init_args.score", "mahalanobis",
                  "--trainer.max_epochs", "6")  # fmt: skip
    checkpoint = read_checkpoint(best)
    assert checkpoint["hyper_parameters"]["label_scheme"] == "pseudo"
    assert checkpoint["state_dict"]["model.head.weight"].shape[0] == 4
    scores = _test_scores(best)
    assert binary_metrics(scores["target"], scores["score"])["auc"] >= 0.75


def test_single_section_with_attributes_trains_on_them(tmp_path: Path, capsys):
    """A section whose training clips carry attributes (DCASE 2022+) trains on its id x
    attribute classes, not on pseudo-classes, and says so; scores stay per section."""
    root = generate_dataset(tmp_path / "data", machine_types=("fan",), machine_ids=("id_00",),
                            layout="dcase2021", n_train=10, n_test_normal=4, n_test_anomaly=4,
                            duration_s=2.0, seed=0)  # fmt: skip
    best = _train(root, tmp_path / "run", "--model.init_args.score", "nll",
                  "--trainer.max_epochs", "6", "--data.val_fraction", "0")  # fmt: skip
    labels = ["section_00|spd_100", "section_00|spd_110"]
    assert f"training on the id x attribute classes {labels}" in capsys.readouterr().out
    checkpoint = read_checkpoint(best)
    hparams = checkpoint["hyper_parameters"]
    assert hparams["label_scheme"] == "attributes" and hparams["attribute_labels"] == labels
    assert checkpoint["state_dict"]["model.head.weight"].shape[0] == 2
    scores = _test_scores(best)
    assert np.isfinite(scores["score"]).all() and set(scores["machine_id"]) == {"section_00"}
    module, _ = load_module(best)  # nll: -log of the section's summed class probabilities
    pcm = torch.stack([load_waveform(p, 16000, 0, 32000) for p in scores["path"][:2]])
    output = module.score({"waveform": pcm, "class_index": torch.zeros(2, dtype=torch.long)})
    assert (output.frame_scores >= 0).all()


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match=r"score must be one of \('nll', 'knn', 'mahalanobis'\)"):
        MachineIDClassifier(score="mean")
    with pytest.raises(ValueError, match="label_scheme 'ids' needs at least 2 machine ids"):
        MachineIDClassifier(class_names=["id_00"], label_scheme="ids")
    with pytest.raises(ValueError, match="label_scheme 'attributes' needs training clips whose"):
        MachineIDClassifier(class_names=["id_00", "id_02"], attribute_labels=["id_00", "id_02"],
                            label_scheme="attributes")  # fmt: skip


class _StemDtypes(Callback):
    """Records the dtype of the network's first block output in every training step (not in
    the BatchNorm recalibration, which runs the network in train mode in float32)."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.in_step = False

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        def record(layer: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
            if self.in_step:
                self.dtypes.add(output.dtype)

        pl_module.model.stem.register_forward_hook(record)

    def on_train_batch_start(self, *args: Any) -> None:
        self.in_step = True

    def on_train_batch_end(self, *args: Any) -> None:
        self.in_step = False


GPU = pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA GPU")])  # fmt: skip


@pytest.mark.parametrize("accelerator", ["cpu", GPU])
def test_trains_in_bf16_and_scores_in_float32(accelerator: str, tmp_path: Path):
    """bf16-mixed training (chosen automatically on CUDA; asked for on the CPU, where
    Lightning runs the same autocast path): the network trains in bf16, scores in float32,
    and its checkpoint scores identically."""
    root = _data(tmp_path / "data", ("id_00", "id_02"))
    data = MachineSoundDataModule(root=str(root), clip_seconds=2.0, batch_size=8)
    (group,) = data.groups()
    bound = data.for_group(group)
    stem = _StemDtypes()
    checkpoints = ModelCheckpoint(monitor="val/loss", save_last=True)
    trainer = make_trainer({"accelerator": accelerator, "devices": 1, "max_epochs": 6,
                            "precision": None if accelerator == "gpu" else "bf16-mixed",
                            "default_root_dir": str(tmp_path), "enable_progress_bar": False,
                            "enable_model_summary": False, "logger": False,
                            "callbacks": [stem, checkpoints]})  # fmt: skip
    assert trainer.precision == "bf16-mixed"
    module = fit_model(MachineIDClassifier(channels=(16, 32, 32), embedding_dim=32), bound, trainer)
    assert stem.dtypes == {torch.bfloat16}
    scored = score_loader(module, bound.test_dataloader())
    output = module.score(next(iter(bound.test_dataloader())))
    assert output.clip_scores.dtype == torch.float32
    assert output.clip_scores.device.type == ("cuda" if accelerator == "gpu" else "cpu")
    assert binary_metrics(scored.target, scored.score)["auc"] >= 0.75
    loaded, _ = load_module(checkpoints.best_model_path, map_location=module.device)
    loaded.to(module.device)
    assert np.array_equal(score_loader(loaded, bound.test_dataloader()).score, scored.score)
