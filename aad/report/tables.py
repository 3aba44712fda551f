"""Write per-clip scores and metric tables: ``scores.csv``, ``metrics.json``, ``metrics.md``."""

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
    "precision",
    "recall",
    "f1",
)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value


def write_results(
    clip_scores: pd.DataFrame,
    out_dir: str | Path,
    *,
    extra: dict[str, Any] | None = None,
    group_column: str | None = None,
) -> pd.DataFrame:
    """Write ``scores.csv``, ``metrics.json`` and ``metrics.md`` into ``out_dir``.

    ``group_column`` (e.g. ``"model"``) makes one metrics table per value of that column,
    stacked with the column in front. Returns the metrics table. NaN (a missing class)
    is ``null`` in JSON and ``n/a`` in Markdown.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clip_scores.to_csv(out_dir / "scores.csv", index=False)
    table = grouped_metrics(clip_scores, group_column)
    payload = {
        **(extra or {}),
        "metrics": [{k: _json_safe(v) for k, v in row.items()} for row in table.to_dict("records")],
    }
    (out_dir / "metrics.json").write_text(json.dumps(payload, indent=2) + "\n")
    (out_dir / "metrics.md").write_text(to_markdown(table) + "\n")
    return table


def grouped_metrics(clip_scores: pd.DataFrame, group_column: str | None = None) -> pd.DataFrame:
    """:func:`aad.metrics.metrics_table`, optionally once per value of ``group_column``."""
    if group_column is None or group_column not in clip_scores.columns:
        return _ordered(metrics_table(clip_scores))
    parts = []
    for value, group in clip_scores.groupby(group_column, sort=False):
        table = _ordered(metrics_table(group))
        table.insert(0, group_column, value)
        parts.append(table)
    return pd.concat(parts, ignore_index=True)


def _ordered(table: pd.DataFrame) -> pd.DataFrame:
    columns = [c for c in TABLE_COLUMNS if c in table.columns]
    return table[columns + [c for c in table.columns if c not in columns]]
