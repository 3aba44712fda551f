"""Report tables and plots."""

import json

import numpy as np
import pandas as pd

from aad.report.plots import plot_frame_errors, plot_roc_pr, plot_score_histograms
from aad.report.tables import grouped_metrics, write_results


def _clip_scores():
    rng = np.random.default_rng(0)
    rows = []
    for machine_type in ("fan", "valve"):
        for machine_id in ("id_00", "id_02"):
            for target in (0, 1):
                for _ in range(5):
                    rows.append(
                        {
                            "machine_type": machine_type,
                            "machine_id": machine_id,
                            "target": target,
                            "score": rng.normal(target * 2.0, 0.5),
                        }
                    )
    frame = pd.DataFrame(rows)
    frame["decision"] = (frame["score"] > 1.0).astype(int)
    return frame


def test_write_results(tmp_path):
    table = write_results(_clip_scores(), tmp_path, extra={"threshold": 1.0})
    assert {"scores.csv", "metrics.json", "metrics.md"} <= {p.name for p in tmp_path.iterdir()}
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["threshold"] == 1.0
    rows = {(r["machine_type"], r["machine_id"]): r for r in payload["metrics"]}
    assert rows[("fan", "hmean")]["auc"] > 0.9
    assert {"f1", "precision", "recall", "pauc", "ap"} <= set(rows[("ALL", "hmean")])
    assert list(table.columns[:4]) == ["machine_type", "machine_id", "n_normal", "n_anomaly"]
    assert "| fan | id_00 |" in (tmp_path / "metrics.md").read_text()


def test_missing_class_is_na_not_a_crash(tmp_path):
    normals = _clip_scores().query("target == 0")
    write_results(normals, tmp_path)
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["metrics"][0]["auc"] is None
    assert "n/a" in (tmp_path / "metrics.md").read_text()
    assert plot_roc_pr(normals, tmp_path) == []  # nothing to draw, no error


def test_grouped_metrics_by_model():
    frame = pd.concat([_clip_scores().assign(model="a"), _clip_scores().assign(model="b")])
    table = grouped_metrics(frame, "model")
    assert table.columns[0] == "model"
    assert set(table["model"]) == {"a", "b"}


def test_plots(tmp_path):
    frame = _clip_scores()
    written = plot_roc_pr(frame, tmp_path)
    assert sorted(p.name for p in written) == [
        "pr_fan.png",
        "pr_valve.png",
        "roc_fan.png",
        "roc_valve.png",
    ]
    hist = plot_score_histograms(frame, tmp_path, {"fan": 1.0, "valve": 0.5})
    assert [p.name for p in hist] == ["hist_fan.png", "hist_valve.png"]
    curve = plot_frame_errors(
        np.arange(10) * 0.032, np.random.rand(10), tmp_path / "e.png", clip_score=0.5
    )
    assert curve.stat().st_size > 1000
