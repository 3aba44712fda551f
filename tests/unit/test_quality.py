"""benchmarks/quality.py and benchmarks/peers.py: bootstrap, P1 split, report, PyOD peers."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchmarks import peers, quality


def test_bootstrap_auc_equals_roc_auc_score_on_each_resample() -> None:
    rng = np.random.default_rng(3)
    normal = np.round(rng.normal(0.0, 1.0, 7), 1)  # rounding makes ties
    anomaly = np.round(rng.normal(0.8, 1.0, 5), 1)
    aucs = quality.bootstrap_auc(normal, anomaly, 50, np.random.default_rng(11))
    draws = np.random.default_rng(11)  # the documented draw order: normals, then anomalies
    normal_idx = draws.integers(0, 7, size=(50, 7))
    anomaly_idx = draws.integers(0, 5, size=(50, 5))
    for b in range(50):
        labels = np.r_[np.zeros(7), np.ones(5)]
        scores = np.r_[normal[normal_idx[b]], anomaly[anomaly_idx[b]]]
        assert aucs[b] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def _frame(scores_by_type: dict[str, tuple[list[float], list[float]]]) -> pd.DataFrame:
    rows = []
    for machine_type, (normal, anomaly) in scores_by_type.items():
        for target, values in ((0, normal), (1, anomaly)):
            for i, score in enumerate(values):
                rows.append(
                    {
                        "machine_type": machine_type,
                        "path": f"{machine_type}/{target}_{i}.wav",
                        "target": target,
                        "score": score,
                    }
                )
    return pd.DataFrame(rows)


def test_bootstrap_interval_known_cases() -> None:
    separated = _frame({"fan": ([0.1, 0.2, 0.3], [0.8, 0.9]), "pump": ([0, 1], [5, 6, 7])})
    assert quality.bootstrap_mean_auc(separated, 500, seed=0) == (1.0, 1.0)
    tied = _frame({"fan": ([1.0] * 4, [1.0] * 4)})
    assert quality.bootstrap_mean_auc(tied, 500, seed=0) == (0.5, 0.5)
    # one type, AUC 0.5 by construction: the interval is wide and contains it, seeded
    rng = np.random.default_rng(0)
    noise = _frame({"fan": (list(rng.normal(size=20)), list(rng.normal(size=20)))})
    low, high = quality.bootstrap_mean_auc(noise, 1000, seed=0)
    auc = roc_auc_score(noise["target"], noise["score"])
    assert low < auc < high and 0.2 < high - low < 0.5
    assert quality.bootstrap_mean_auc(noise, 1000, seed=0) == (low, high)


def test_p1_split_counts_per_type(dcase2020_mini: Path) -> None:
    eval_set = quality.build_set("p1", dcase2020_mini.parent)
    counts = {
        g.machine_type: (
            len(g.train),
            sum(r.label == "normal" for r in g.test),
            sum(r.label == "anomaly" for r in g.test),
        )
        for g in eval_set.groups
    }
    normals = {t: len(list((dcase2020_mini / t / "test").glob("normal_*.wav"))) for t in counts}
    anomalies = {t: len(list((dcase2020_mini / t / "test").glob("anomaly_*.wav"))) for t in counts}
    assert sorted(counts) == ["ToyCar", "ToyConveyor", "fan", "pump", "slider", "valve"]
    for machine_type, (n_train, n_normal, n_anomaly) in counts.items():
        assert n_train == normals[machine_type] // 2
        assert n_normal == normals[machine_type] - n_train
        assert n_anomaly == anomalies[machine_type]
    assert "--data.train_from_test=0.5" in eval_set.overrides
    for group in eval_set.groups:
        assert all(r.label == "normal" for r in group.train)
        assert not {r.path for r in group.train} & {r.path for r in group.test}


def test_mimii_mini_protocol(mimii_mini: Path) -> None:
    eval_set = quality.build_set("mimii_mini", mimii_mini.parent)
    for group in eval_set.groups:
        assert len(group.train) == 2
        assert sorted(r.label for r in group.test) == ["anomaly"] * 4 + ["normal"] * 2


def _table() -> pd.DataFrame:
    scores = pd.DataFrame(
        {
            "method": "knn",
            "set": "p1",
            "machine_type": ["fan"] * 4,
            "machine_id": "id_00",
            "path": [f"{i}.wav" for i in range(4)],
            "target": [0, 0, 1, 1],
            "score": [0.1, 0.3, 0.2, 0.9],
        }
    )
    failures = [quality._failure("p1", "lstm_ae", "all", RuntimeError("compare exited 1: boom"))]
    return quality.summarise(scores, failures, n_resamples=100, seed=0)


def test_summary_table_and_markdown_show_failed_rows_with_reason() -> None:
    table = _table()
    knn = table[(table["method"] == "knn") & (table["machine_type"] == "fan")].iloc[0]
    assert knn["auc"] == pytest.approx(0.75) and knn["status"] == "ok"
    mean = table[(table["method"] == "knn") & (table["machine_type"] == "mean")].iloc[0]
    assert mean["auc"] == pytest.approx(0.75) and mean["auc_low"] <= 0.75 <= mean["auc_high"]
    failed = table[table["method"] == "lstm_ae"]
    assert set(failed["status"]) == {"failed"} and math.isnan(failed["auc"].iloc[0])
    timings = pd.DataFrame([{"set": "p1", "part": "aad compare", "seconds": 1.0}])
    text = quality.report_markdown(table, timings, ["a note"], {"p1": "P1"}, "# title")
    lstm_lines = [line for line in text.splitlines() if line.startswith("| lstm_ae |")]
    assert lstm_lines and all("RuntimeError: compare exited 1: boom" in x for x in lstm_lines)
    knn_line = next(line for line in text.splitlines() if line.startswith("| knn | 0.750 ["))
    assert knn_line.endswith("] |")
    assert "- a note" in text


def test_peers_skip_cleanly_without_pyod(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pyod", None)  # import pyod -> ImportError
    reason = peers.missing_peer_packages()
    assert reason is not None and reason.startswith("PyOD peers skipped: pyod is not installed")
    with pytest.raises(peers.PeerUnavailableError, match=r"pip install -e '\.\[bench\]'"):
        peers.peer_scores("pyod_for_audio_fast", ["a.wav", "b.wav"], ["c.wav"])


def test_unknown_peer_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown peer 'x'; known: pyod_for_audio_fast"):
        peers.peer_scores("x", ["a.wav"], ["b.wav"])


def test_peer_scores_real_clips_above_chance(dcase2020_mini: Path) -> None:
    pytest.importorskip("pyod")
    pytest.importorskip("librosa")
    eval_set = quality.build_set("p1", dcase2020_mini.parent)
    group = next(g for g in eval_set.groups if g.machine_type == "slider")
    train, test = [r.path for r in group.train], [r.path for r in group.test]
    targets = [r.target for r in group.test]
    scores = peers.peer_scores("pyod_for_audio_balanced", train, test, seed=0)
    assert scores.shape == (len(test),) and np.all(np.isfinite(scores))
    assert roc_auc_score(targets, scores) > 0.6  # 0.683 measured (PyOD 3.6.7)


def test_quality_run_without_pyod_says_why(
    monkeypatch: pytest.MonkeyPatch, mimii_mini: Path, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "pyod", None)
    argv = ["--sets", "mimii_mini", "--methods", "pyod_audio_ae", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="nothing was scored: PyOD peers skipped: pyod is not"):
        quality.main([*argv, "--data-root", str(mimii_mini.parent)])
