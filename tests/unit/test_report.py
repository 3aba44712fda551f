"""Reports: write_results (CSV/JSON/Markdown, failures, n/a), summary tables, PNG plots and the
DCASE submission files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from aad.data.manifest import ClipRecord
from aad.engine.results import SCORE_COLUMNS, clip_table, failure_row
from aad.report.compare_plots import plot_auc_bars, plot_roc_curves
from aad.report.plots import plot_explanation, plot_roc_pr, plot_score_histograms
from aad.report.submission import submission_name, write_submission
from aad.report.tables import check_writable, grouped_metrics, summary_table, write_results

PNG = b"\x89PNG\r\n\x1a\n"


def _clip_scores(method: str = "m", shift: float = 2.0, types=("fan", "valve")) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    records = [ClipRecord(f"/d/{t}/test/{label}_{i}_{n:02d}.wav", "dcase2020", t, i, "test", label)
               for t in types for i in ("id_00", "id_02") for label in ("normal", "anomaly")
               for n in range(5)]  # fmt: skip
    scores = [rng.normal(shift * r.target, 0.5) for r in records]
    return clip_table(records, scores, threshold=1.0, method=method)


def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG and path.stat().st_size > 1000


def test_write_results_writes_every_table(tmp_path: Path) -> None:
    scores = _clip_scores()
    broken = ClipRecord("/d/fan/test/anomaly_id_00_99.wav", "dcase2020", "fan", "id_00", "test",
                        "anomaly")  # fmt: skip
    unscored = clip_table([broken], [math.nan], 1.0, method="m", status=["error: truncated"])
    failures = pd.DataFrame([failure_row("knn", "valve", ValueError("no clips\n left"))])
    runs = pd.DataFrame([{"method": "m", "group": "fan", "seconds": 1.5}])
    table = write_results(pd.concat([scores, unscored], ignore_index=True), tmp_path,
                          failures=failures, runs=runs, extra={"threshold": 1.0},
                          title="A run")  # fmt: skip
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {"scores.csv", "metrics.csv", "metrics.json", "metrics.md", "failures.csv",
                     "runs.csv"}  # fmt: skip
    written = pd.read_csv(tmp_path / "scores.csv")
    assert list(written.columns) == list(SCORE_COLUMNS) and len(written) == 41
    assert written["status"].iloc[-1] == "error: truncated" and written["decision"].iloc[-1] == -1
    rows = {(r["machine_type"], r["machine_id"]): r for r in table.to_dict("records")}
    assert rows[("fan", "id_00")]["n_anomaly"] == 5  # the unscored clip is not measured
    assert rows[("fan", "hmean")]["auc"] > 0.9
    assert list(table.columns[:4]) == ["machine_type", "machine_id", "n_normal", "n_anomaly"]
    assert {"precision", "recall", "f1", "pauc", "ap"} <= set(table.columns)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "metrics.csv"), table, atol=1e-6)
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert payload["threshold"] == 1.0 and len(payload["metrics"]) == len(table)
    assert payload["failures"] == [
        {"method": "knn", "group": "valve", "reason": "ValueError: no clips left"}]  # fmt: skip
    markdown = (tmp_path / "metrics.md").read_text()
    assert markdown.startswith("# A run\n") and "| fan | id_00 |" in markdown
    assert "## Failures (the run went on without them)" in markdown
    assert "| knn | valve | ValueError: no clips left |" in markdown
    assert pd.read_csv(tmp_path / "failures.csv")["method"].tolist() == ["knn"]
    assert pd.read_csv(tmp_path / "runs.csv")["seconds"].tolist() == [1.5]


def test_undefined_metrics_are_na(tmp_path: Path) -> None:
    normals = _clip_scores().query("target == 0")
    normals = normals.assign(decision=(normals["score"] > 0).astype(int))
    assert (normals["decision"] == 1).any()  # clips called anomalous, none is
    table = write_results(normals, tmp_path)
    for column in ("auc", "pauc", "ap", "precision", "recall", "f1"):
        assert table[column].isna().all(), column
    payload = json.loads((tmp_path / "metrics.json").read_text())
    assert all(row["auc"] is None and row["f1"] is None for row in payload["metrics"])
    lines = (tmp_path / "metrics.md").read_text().splitlines()
    fan = next(line for line in lines if line.startswith("| fan | id_00 |"))
    assert fan.count("n/a") == 6 and "| 0.000 |" not in fan
    assert "## Failures" not in "\n".join(lines) and not (tmp_path / "failures.csv").exists()
    assert plot_roc_pr(normals, tmp_path) == []  # nothing to draw, no error


def test_grouped_metrics_and_summary_mark_failed_cells(tmp_path: Path) -> None:
    scores = pd.concat([_clip_scores("a"), _clip_scores("b", shift=0.0, types=("fan",))])
    table = grouped_metrics(scores, "method")
    assert table.columns[0] == "method" and list(dict.fromkeys(table["method"])) == ["a", "b"]
    failures = pd.DataFrame([failure_row("b", "valve/id_00", "boom"),
                             failure_row("c", "fan", "bad config")])  # fmt: skip
    wide = summary_table(table, "auc", failures)
    assert wide["method"].tolist() == ["a", "b", "c"]
    assert list(wide.columns) == ["method", "fan", "valve", "hmean auc"]
    cells = wide.set_index("method")
    assert cells.loc["b", "valve"] == "failed" and cells.loc["c", "fan"] == "failed"
    assert cells.loc["a", "fan"] > 0.9 and isinstance(cells.loc["b", "fan"], float)
    assert math.isnan(cells.loc["c", "valve"]) and math.isnan(cells.loc["c", "hmean auc"])
    write_results(scores, tmp_path, group_column="method", failures=failures)
    markdown = (tmp_path / "metrics.md").read_text()
    assert "## AUC, mean over ids" in markdown
    assert "## pAUC (max FPR 0.1), mean over ids" in markdown
    assert "| b |" in markdown and "failed" in markdown


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "new" / "folder")
    assert (tmp_path / "new" / "folder").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(PermissionError, match=r"output folder .*file/out is not writable"):
        check_writable(tmp_path / "file" / "out")


def test_plots_write_pngs(tmp_path: Path) -> None:
    frame = _clip_scores()
    written = plot_roc_pr(frame, tmp_path)
    assert sorted(p.name for p in written) == ["pr_fan.png", "pr_valve.png", "roc_fan.png",
                                               "roc_valve.png"]  # fmt: skip
    hist = plot_score_histograms(frame, tmp_path, {"fan": 1.0, "valve": 0.5})
    assert [p.name for p in hist] == ["hist_fan.png", "hist_valve.png"]
    both = pd.concat([frame, _clip_scores("b", shift=1.0)])
    roc = plot_roc_curves(both, "fan", tmp_path / "compare" / "roc_fan.png")
    summary = grouped_metrics(both, "method").query("machine_id == 'mean'")
    bars = plot_auc_bars(summary[["method", "machine_type", "auc"]], tmp_path / "auc_bars.png")
    explanation = plot_explanation(np.random.default_rng(0).random((64, 40)), 1.28,
                                   np.arange(40) * 0.032, np.random.default_rng(1).random(40),
                                   tmp_path / "explain" / "clip.png", title="clip",
                                   clip_score=0.5, threshold=0.7)  # fmt: skip
    for path in [*written, *hist, roc, bars, explanation]:
        assert _is_png(path), path


def test_submission_files_are_the_dcase_ones(tmp_path: Path) -> None:
    scores = _clip_scores(types=("fan",))
    scores.loc[0, "status"] = "error: truncated"  # a clip without a score has no line
    evaluation = ClipRecord("/e/fan/test/id_01_00000000.wav", "dcase2020", "fan", "", "test",
                            "unknown")  # fmt: skip
    scores = pd.concat([scores, clip_table([evaluation], [0.3], 1.0)], ignore_index=True)
    written = write_submission(scores, tmp_path / "submission")
    assert [p.name for p in written] == [
        "anomaly_score_fan_id_00_test.csv", "decision_result_fan_id_00_test.csv",
        "anomaly_score_fan_id_02_test.csv", "decision_result_fan_id_02_test.csv",
    ]  # fmt: skip
    assert submission_name("anomaly_score", "fan", "section_00") == (
        "anomaly_score_fan_section_00_test.csv")  # fmt: skip
    lines = written[0].read_text().splitlines()
    expected = scores[(scores["machine_id"] == "id_00") & (scores["status"] == "ok")]
    assert len(lines) == len(expected) == 9  # no header, one line per scored clip
    names = [Path(p).name for p in expected["path"]]
    assert [line.split(",")[0] for line in lines] == names
    np.testing.assert_allclose([float(line.split(",")[1]) for line in lines], expected["score"],
                               rtol=1e-7)  # fmt: skip
    decisions = written[1].read_text().splitlines()
    assert decisions == [f"{n},{d}" for n, d in zip(names, expected["decision"], strict=True)]
