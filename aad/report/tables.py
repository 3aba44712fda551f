"""Write a run's results: ``scores.csv``, ``metrics.csv/.json/.md``, ``failures.csv``, ``runs.csv``.

One writer for ``train.py``, ``evaluate.py`` and ``compare``; the metrics always come from
:func:`aad.metrics.metrics_table`, once per value of ``group_column`` (a model or a method).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from aad.metrics import metrics_table, to_markdown

TABLE_COLUMNS = (
    "machine_type",
    "machine_id",
    "n_normal",
    "n_anomaly",
    "auc",
    "pauc",
    "ap",
    "auc_source",
    "auc_target",
    "precision",
    "recall",
    "f1",
)
SUMMARY_METRICS = {
    "auc": "AUC",
    "pauc": "pAUC (max FPR 0.1)",
    "auc_source": "AUC (source)",
    "auc_target": "AUC (target)",
}


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value


def grouped_metrics(clip_scores: pd.DataFrame, group_column: str | None = None) -> pd.DataFrame:
    """:func:`aad.metrics.metrics_table`, optionally once per value of ``group_column``."""
    if group_column is None or group_column not in clip_scores.columns:
        return _ordered(metrics_table(clip_scores))
    parts = []
    for value, group in clip_scores.groupby(group_column, sort=False):
        table = _ordered(metrics_table(group))
        table.insert(0, group_column, value)
        parts.append(table)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in TABLE_COLUMNS if c in table.columns]
    return table[columns + [c for c in table.columns if c not in columns]]


def summary_table(
    table: pd.DataFrame, metric: str = "auc", failures: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Wide view: one row per method, one column per machine type (mean over its ids), the
    harmonic mean over types last; a method that failed on a type shows ``failed``."""
    means = table[(table["machine_id"] == "mean") & (table["machine_type"] != "ALL")]
    methods = list(dict.fromkeys(table["method"])) if len(table) else []
    if failures is not None and len(failures):
        methods += [m for m in dict.fromkeys(failures["method"]) if m not in methods]
    wide = means.pivot(index="method", columns="machine_type", values=metric).astype(object)
    wide = wide.reindex(methods)
    if failures is not None:
        for row in failures.itertuples():
            machine_type = str(row.group).split("/")[0]
            if row.method in wide.index:
                wide.loc[row.method, machine_type] = "failed"
    hmeans = table[table["machine_id"] == "hmean"]
    overall = hmeans[hmeans["machine_type"] == "ALL"].set_index("method")[metric]
    if overall.empty:
        overall = hmeans.set_index("method")[metric]
    wide[f"hmean {metric}"] = overall.reindex(wide.index)
    return wide.reset_index().fillna(math.nan)


def check_writable(out: Path) -> None:
    """Fail before any work when ``out`` cannot be created or written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".aad-write-check"
        probe.write_text("ok")
        probe.unlink()
    except OSError as error:
        raise PermissionError(f"output folder {out} is not writable: {error}") from None


def write_results(
    clip_scores: pd.DataFrame,
    out_dir: str | Path,
    *,
    group_column: str | None = None,
    failures: pd.DataFrame | None = None,
    runs: pd.DataFrame | None = None,
    extra: dict[str, Any] | None = None,
    title: str | None = None,
) -> pd.DataFrame:
    """Write every table of a run into ``out_dir``; returns the metrics table.

    NaN (an undefined metric) is ``null`` in JSON and ``n/a`` in Markdown. With
    ``group_column="method"`` the Markdown starts with method x machine type summaries.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip_scores.to_csv(out_dir / "scores.csv", index=False, float_format="%.8g")
    table = grouped_metrics(clip_scores, group_column) if len(clip_scores) else pd.DataFrame()
    table.to_csv(out_dir / "metrics.csv", index=False, float_format="%.6f")
    failures = failures if failures is not None else pd.DataFrame()
    if len(failures):
        failures.to_csv(out_dir / "failures.csv", index=False)
    if runs is not None and len(runs):
        runs.to_csv(out_dir / "runs.csv", index=False)
    payload = {
        **(extra or {}),
        "metrics": [{k: _json_safe(v) for k, v in r.items()} for r in table.to_dict("records")],
        "failures": failures.to_dict("records"),
    }
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    lines = [f"# {title}", ""] if title else []
    if group_column == "method" and len(table):
        for metric, name in SUMMARY_METRICS.items():
            if metric in table.columns and table[metric].notna().any():
                lines += [
                    f"## {name}, mean over ids",
                    "",
                    to_markdown(summary_table(table, metric, failures)),
                    "",
                ]
    if len(table):
        lines += ["## Every machine type and id", "", to_markdown(table), ""]
    if len(failures):
        lines += ["## Failures (the run went on without them)", "", to_markdown(failures), ""]
    (out_dir / "metrics.md").write_text("\n".join(lines))
    return table
