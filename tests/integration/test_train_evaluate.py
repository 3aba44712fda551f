"""fit -> test -> evaluate.py from the checkpoint -> predict/explain, on the synthetic fixture.

Small on purpose (2 types x 2 ids, 2 s clips, a tiny LSTM, one CPU thread): the whole file
runs in about a minute on 2 cores. The AUC floor is real: a model that fails must fail it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from aad.checkpoints import FORMAT_VERSION, read_checkpoint
from aad.cli import evaluate_main, main
from aad.cli.explain import explain_clips
from aad.cli.predict import predict_files
from aad.models import LSTMAE, load_module

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "--data.clip_seconds", "2.0",
    "--data.batch_size", "8",
    "--model.init_args.window", "16",
    "--trainer.enable_progress_bar", "false",
    "--trainer.enable_model_summary", "false",
    "--torch_threads", "1",
]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """``--torch_threads 1`` sets a process-wide value: give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _fit(root: Path, out: Path, *extra: str) -> pd.DataFrame:
    args = ["--data.root", str(root), "--trainer.default_root_dir", str(out), *SMALL, *extra]
    return main(args)


@pytest.fixture(scope="module")
def run(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both machine types trained in turn (data.machine_type: all), tested, tabled."""
    out = tmp_path_factory.mktemp("run")
    threads = torch.get_num_threads()
    try:
        _fit(synthetic_root, out, "--trainer.max_epochs", "20")
    finally:
        torch.set_num_threads(threads)
    return out


def _best(run: Path, machine_type: str) -> Path:
    (best,) = (run / "lightning_logs" / machine_type / "version_0" / "checkpoints").glob("best*")
    return best


def test_auc_per_machine_type(run: Path):
    payload = json.loads((run / "lightning_logs/summary/version_0/metrics.json").read_text())
    hmeans = {r["machine_type"]: r for r in payload["metrics"] if r["machine_id"] == "hmean"}
    assert set(hmeans) == {"fan", "valve", "ALL"}
    print({t: round(r["auc"], 3) for t, r in hmeans.items()})
    for machine_type in ("fan", "valve"):
        assert hmeans[machine_type]["auc"] >= 0.90, (machine_type, hmeans[machine_type])
    for machine_type in ("fan", "valve"):
        folder = run / "lightning_logs" / machine_type / "version_0"
        assert (folder / "config.yaml").is_file()  # LightningCLI's SaveConfigCallback
        assert list(folder.glob("events.out.tfevents.*"))
        names = {p.name for p in (folder / "test").iterdir()}
        assert {"scores.csv", "metrics.json", "metrics.md", f"roc_{machine_type}.png",
                f"pr_{machine_type}.png", f"hist_{machine_type}.png"} <= names  # fmt: skip


def test_checkpoints_hold_threshold_and_metadata(run: Path):
    folder = run / "lightning_logs/fan/version_0/checkpoints"
    for path in (_best(run, "fan"), folder / "last.ckpt"):
        checkpoint = read_checkpoint(path)  # weights_only=True: plain data and tensors only
        meta = checkpoint["aad"]
        assert meta["format_version"] == FORMAT_VERSION and meta["aad_version"]
        assert np.isfinite(meta["threshold"]) and meta["threshold"] > 0
        assert float(checkpoint["state_dict"]["threshold"]) == meta["threshold"]
        assert checkpoint["datamodule_hyper_parameters"]["machine_type"] == "fan"
        assert int(checkpoint["state_dict"]["normalizer.count"]) > 0


def test_evaluate_reproduces_the_training_run_scores(run: Path, tmp_path: Path):
    evaluate_main(["--ckpt", str(_best(run, "fan")), "--out", str(tmp_path), "--plots", "false"])
    from_test = pd.read_csv(run / "lightning_logs/fan/version_0/test/scores.csv")
    from_evaluate = pd.read_csv(tmp_path / "scores.csv")
    assert from_evaluate["path"].tolist() == from_test["path"].tolist()
    assert np.array_equal(from_evaluate["score"].to_numpy(), from_test["score"].to_numpy())
    assert np.array_equal(from_evaluate["decision"], from_test["decision"])
    columns = ["method", "machine_type", "machine_id", "domain", "path", "label", "target",
               "score", "decision", "status"]  # fmt: skip
    assert columns == list(from_evaluate.columns)
    submission = pd.read_csv(tmp_path / "submission/anomaly_score_fan_id_00_test.csv",
                             header=None, names=["file", "score"])  # fmt: skip
    fan_00 = from_evaluate[from_evaluate["machine_id"] == "id_00"]
    assert submission["file"].tolist() == [Path(p).name for p in fan_00["path"]]
    assert np.allclose(submission["score"], fan_00["score"], rtol=1e-6)


def test_evaluate_run_folder_gives_one_table(run: Path, tmp_path: Path):
    table = evaluate_main(["--ckpt", str(run / "lightning_logs"), "--out", str(tmp_path)])
    assert {"fan", "valve", "ALL"} <= set(table["machine_type"])
    assert {"roc_fan.png", "roc_valve.png", "hist_valve.png"} <= {
        p.name for p in tmp_path.iterdir()
    }


def test_predict_and_explain(run: Path, synthetic_root: Path, tmp_path: Path):
    best = _best(run, "valve")
    test_scores = pd.read_csv(run / "lightning_logs/valve/version_0/test/scores.csv")
    clips = test_scores["path"].tolist()[:3]
    predicted = predict_files(best, clips, tmp_path, {}, "cpu")
    assert np.allclose(predicted["score"], test_scores["score"][:3], rtol=1e-5)
    assert predicted["decision"].tolist() == test_scores["decision"][:3].tolist()
    assert (tmp_path / "predictions.csv").is_file()
    folder = predict_files(best, [str(synthetic_root / "valve" / "test")], tmp_path / "f", {})
    assert len(folder) == 24 and set(folder["status"]) == {"ok"}
    explained = explain_clips(best, [clips[0]], tmp_path, {}, "cpu")
    curve = pd.read_csv(tmp_path / f"explain_{Path(clips[0]).stem}.csv")
    assert list(curve.columns) == ["time_s", "frame_score"]
    assert np.all(np.diff(curve["time_s"]) > 0) and 1.9 < curve["time_s"].iloc[-1] <= 2.1
    assert (tmp_path / f"explain_{Path(clips[0]).stem}.png").stat().st_size > 1000
    assert explained["score"][0] == pytest.approx(curve["frame_score"].mean(), rel=1e-5)


def test_no_anomalies_reports_na(run: Path, synthetic_root: Path, tmp_path: Path):
    root = tmp_path / "normals_only"
    shutil.copytree(synthetic_root / "fan", root / "fan")
    for clip in (root / "fan" / "test").glob("anomaly_*"):
        clip.unlink()
    table = evaluate_main(["--ckpt", str(_best(run, "fan")), "--data.root", str(root),
                           "--out", str(tmp_path / "out")])  # fmt: skip
    assert table["auc"].isna().all()
    assert "n/a" in (tmp_path / "out" / "metrics.md").read_text()


def test_unscorable_test_clips_are_rows_and_the_figures_still_draw(
    run: Path, synthetic_root: Path, tmp_path: Path
):
    """Issue 9: a zero-length and a 0.1 s test clip are status rows (NaN score); the metrics,
    ROC/PR curves and histograms are drawn from the other clips (it raised 'Input contains
    NaN' after scoring and lost the figures); the run reports the failure."""
    root = tmp_path / "bad_test"
    shutil.copytree(synthetic_root / "fan", root / "fan")
    (root / "fan/test/anomaly_id_00_90000000.wav").write_bytes(b"")
    sf.write(root / "fan/test/anomaly_id_00_90000001.wav", np.zeros(1600), 16000)
    out = tmp_path / "out"
    table = evaluate_main(["--ckpt", str(_best(run, "fan")), "--data.root", str(root),
                           "--out", str(out)])  # fmt: skip
    scores = pd.read_csv(out / "scores.csv")
    bad = scores[scores["status"] != "ok"]
    assert sorted(Path(p).name for p in bad["path"]) == [
        "anomaly_id_00_90000000.wav", "anomaly_id_00_90000001.wav"]  # fmt: skip
    assert bad["score"].isna().all() and (scores["status"] == "ok").sum() == 24
    assert table.attrs["failures"] and table["auc"].notna().all()
    for figure in ("roc_fan.png", "pr_fan.png", "hist_fan.png"):
        assert (out / figure).stat().st_size > 1000
    with pytest.raises(ValueError, match=r"1 clip\(s\) not explained: .*90000001.wav: too short"):
        explain_clips(_best(run, "fan"), [str(root / "fan/test/anomaly_id_00_90000001.wav")],
                      tmp_path / "explain", {}, "cpu")  # fmt: skip


def test_unwritable_out_fails_before_any_work(run: Path, tmp_path: Path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="output folder .*a_file/x is not writable"):
        evaluate_main(["--ckpt", str(_best(run, "fan")), "--out", str(blocker / "x")])
    with pytest.raises(PermissionError, match="is not writable"):
        predict_files(_best(run, "fan"), [str(tmp_path)], blocker / "y", {}, "cpu")


def test_other_sample_rate_is_resampled(run: Path, synthetic_root: Path, tmp_path: Path, capsys):
    import soundfile as sf
    import torchaudio.functional as AF

    root = tmp_path / "rate"
    (root / "fan" / "test").mkdir(parents=True)
    for clip in (
        sorted((synthetic_root / "fan" / "test").glob("normal_id_00_*.wav"))[:4]
        + sorted((synthetic_root / "fan" / "test").glob("anomaly_id_00_*.wav"))[:2]
    ):
        audio, rate = sf.read(clip, dtype="float32")
        resampled = AF.resample(torch.from_numpy(audio), rate, 22050).numpy()
        sf.write(root / "fan" / "test" / clip.name, resampled, 22050)
    with pytest.warns(UserWarning, match="clips have sample rates 22050 Hz"):
        table = evaluate_main(["--ckpt", str(_best(run, "fan")), "--data.root", str(root),
                               "--out", str(tmp_path / "out"), "--plots", "false"])  # fmt: skip
    assert float(table.query("machine_id == 'id_00'")["auc"].iloc[0]) > 0.5


def test_resume_keeps_the_fitted_normaliser(run: Path, synthetic_root: Path, monkeypatch):
    last = run / "lightning_logs/fan/version_0/checkpoints/last.ckpt"
    stored = read_checkpoint(last)
    epochs = stored["epoch"] + 2

    def refit(*_args, **_kwargs):
        raise AssertionError("normaliser refitted on resume")

    monkeypatch.setattr(LSTMAE, "fit_normalizer", refit)
    _fit(synthetic_root, run / "resumed", "--data.machine_type", "fan", "--ckpt_path", str(last),
         "--trainer.max_epochs", str(epochs), "--evaluate", "false")  # fmt: skip
    (resumed,) = (run / "resumed/lightning_logs/version_0/checkpoints").glob("last.ckpt")
    module, checkpoint = load_module(resumed)
    assert checkpoint["epoch"] == epochs - 1
    assert torch.equal(module.normalizer.mean, stored["state_dict"]["normalizer.mean"])
    assert np.isfinite(float(module.threshold))  # fitted at validation: in every checkpoint


def test_nan_loss_stops_and_keeps_last_good_checkpoint(
    synthetic_root: Path, tmp_path: Path, monkeypatch, capsys
):
    original = LSTMAE.training_loss

    def poisoned(self, features, batch):
        loss = original(self, features, batch)
        return loss * float("nan") if self.current_epoch >= 1 else loss

    monkeypatch.setattr(LSTMAE, "training_loss", poisoned)
    table = _fit(synthetic_root, tmp_path, "--data.machine_type", "fan",
                 "--trainer.max_epochs", "3")  # fmt: skip
    assert table.empty and table.attrs["failures"] == 1  # train.py exits 1
    failures = pd.read_csv(tmp_path / "lightning_logs/summary/version_0/failures.csv")
    assert failures["reason"].str.contains("NonFiniteLossError: training loss is nan").all()
    printed = capsys.readouterr().out
    assert "FAILED: NonFiniteLossError: training loss is nan at epoch 1, global step" in printed
    last = tmp_path / "lightning_logs/version_0/checkpoints/last.ckpt"
    checkpoint = read_checkpoint(last)
    assert checkpoint["epoch"] == 0
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values()
               if v.is_floating_point() and v.ndim)  # fmt: skip


def test_dcase_baseline_trains(synthetic_root: Path, tmp_path: Path):
    table = _fit(synthetic_root, tmp_path, "--model", str(REPO / "configs/model/dcase_ae.yaml"),
                 "--data.machine_type", "fan", "--trainer.max_epochs", "20")  # fmt: skip
    module, _ = load_module(next((tmp_path / "lightning_logs").rglob("best*.ckpt")))
    assert type(module).__name__ == "DCASEAE" and module.input_dim == 640
    fan = table[(table["machine_type"] == "fan") & (table["machine_id"] == "hmean")]
    print("DCASE-AE fan AUC", float(fan["auc"].iloc[0]))
    assert float(fan["auc"].iloc[0]) > 0.75
