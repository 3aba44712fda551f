"""Detection metrics: AUC, pAUC (DCASE definition), average precision, per type and id.

pAUC is scikit-learn's standardised partial AUC, ``roc_auc_score(y, s, max_fpr=0.1)``,
exactly as the DCASE Task 2 scorers compute it. Scores follow the PyOD convention:
higher means more anomalous. Labels: 1 anomaly, 0 normal; rows labelled -1 (unknown)
are ignored by every metric.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_fscore_support, roc_auc_score

MAX_FPR = 0.1
METRIC_COLUMNS = ("auc", "pauc", "ap")
DOMAIN_NAMES = ("source", "target")


def binary_metrics(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    max_fpr: float = MAX_FPR,
) -> dict[str, float]:
    """AUC, pAUC and AP of continuous scores; NaN (with a warning) when a class is missing.

    >>> binary_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])["auc"]
    1.0
    """
    labels = np.asarray(labels)
    scores = np.asarray(scores, dtype=np.float64)
    known = labels >= 0
    labels, scores = labels[known], scores[known]
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or Inf; metrics are undefined")
    n_anomaly = int(labels.sum())
    n_normal = int(len(labels) - n_anomaly)
    if n_anomaly == 0 or n_normal == 0:
        warnings.warn(
            f"AUC undefined: {n_normal} normal and {n_anomaly} anomalous clips "
            "(both classes are needed); reporting NaN",
            stacklevel=2,
        )
        return {"auc": math.nan, "pauc": math.nan, "ap": math.nan}
    return {
        "auc": float(roc_auc_score(labels, scores)),
        "pauc": float(roc_auc_score(labels, scores, max_fpr=max_fpr)),
        "ap": float(average_precision_score(labels, scores)),
    }


def decision_metrics(labels: np.ndarray, decisions: np.ndarray) -> dict[str, float]:
    """Precision, recall and F1 of hard decisions (1 = anomaly) on labelled rows.

    Undefined values are NaN (``n/a`` in tables), never 0: without anomalous clips recall and
    F1 are undefined; without any clip decided anomalous, precision is; clips without a
    decision (-1) are left out.
    """
    labels = np.asarray(labels)
    decisions = np.asarray(decisions)
    known = (labels >= 0) & (decisions >= 0)  # decision -1: none (no threshold, no score)
    if not known.any() or not (labels[known] == 1).any():
        return {"precision": math.nan, "recall": math.nan, "f1": math.nan}
    precision, recall, f1, _ = precision_recall_fscore_support(
        labels[known], decisions[known], average="binary", zero_division=np.nan
    )
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def domain_aucs(
    labels: np.ndarray, scores: np.ndarray, domains: Sequence[str] | pd.Series
) -> dict[str, float]:
    """``auc_source`` / ``auc_target`` as the DCASE 2022+ scorers compute them: the normal
    clips of that domain against every anomalous clip (both domains); NaN when undefined."""
    labels, scores, domains = np.asarray(labels), np.asarray(scores), np.asarray(domains)
    result = {}
    for domain in DOMAIN_NAMES:
        chosen = (labels == 1) | ((labels == 0) & (domains == domain))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result[f"auc_{domain}"] = binary_metrics(labels[chosen], scores[chosen])["auc"]
    return result


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean as DCASE uses it to summarise AUC/pAUC; NaN if any value is NaN or <= 0."""
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0 or np.any(~np.isfinite(array)) or np.any(array <= 0):
        return math.nan
    return float(array.size / np.sum(1.0 / array))


def metrics_table(clip_scores: pd.DataFrame, max_fpr: float = MAX_FPR) -> pd.DataFrame:
    """Per machine type and id metrics, with per-type summary rows.

    ``clip_scores`` needs columns ``machine_type``, ``machine_id``, ``target`` (1/0/-1),
    ``score`` and, optionally, ``decision`` (1/0) for precision/recall/F1.
    With a ``domain`` column holding source/target (DCASE 2021+), ``auc_source`` and
    ``auc_target`` are added (see :func:`domain_aucs`); ``pauc`` stays over both domains.
    Rows per (type, id); then per type a ``mean`` row (arithmetic mean over ids) and a
    ``hmean`` row (harmonic mean over ids, the DCASE summary); and, with several types,
    ``ALL``/``hmean`` over every id of every type.
    """
    required = {"machine_type", "machine_id", "target", "score"}
    missing = required - set(clip_scores.columns)
    if missing:
        raise ValueError(f"clip_scores lacks columns {sorted(missing)}")
    if "status" in clip_scores.columns:  # clips without a score (errors) are not measured
        clip_scores = clip_scores[clip_scores["status"] == "ok"]
    if clip_scores.empty:
        return pd.DataFrame(columns=["machine_type", "machine_id", "n_normal", "n_anomaly",
                                     *METRIC_COLUMNS])  # fmt: skip
    has_decision = "decision" in clip_scores.columns
    has_domains = "domain" in clip_scores.columns and bool(
        clip_scores["domain"].isin(DOMAIN_NAMES).any()
    )
    rows: list[dict[str, object]] = []
    for (machine_type, machine_id), group in clip_scores.groupby(
        ["machine_type", "machine_id"], sort=True
    ):
        targets = group["target"].to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            row: dict[str, object] = {
                "machine_type": machine_type,
                "machine_id": machine_id,
                "n_normal": int((targets == 0).sum()),
                "n_anomaly": int((targets == 1).sum()),
                **binary_metrics(targets, group["score"].to_numpy(), max_fpr),
            }
            if has_domains:
                row.update(domain_aucs(targets, group["score"].to_numpy(), group["domain"]))
        if has_decision:
            row.update(decision_metrics(targets, group["decision"].to_numpy()))
        rows.append(row)
    per_id = pd.DataFrame(rows)
    summary_rows: list[dict[str, object]] = []
    value_columns = [c for c in per_id.columns if c not in ("machine_type", "machine_id")]
    for machine_type, group in per_id.groupby("machine_type", sort=True):
        summary_rows.append(_summary_row(machine_type, "mean", group, value_columns, np.nanmean))
        summary_rows.append(_summary_row(machine_type, "hmean", group, value_columns, None))
    if per_id["machine_type"].nunique() > 1:
        summary_rows.append(_summary_row("ALL", "mean", per_id, value_columns, np.nanmean))
        summary_rows.append(_summary_row("ALL", "hmean", per_id, value_columns, None))
    table = pd.concat([per_id, pd.DataFrame(summary_rows)], ignore_index=True)
    return table


def _summary_row(
    machine_type: str,
    kind: str,
    group: pd.DataFrame,
    value_columns: list[str],
    reducer,
) -> dict[str, object]:
    row: dict[str, object] = {"machine_type": machine_type, "machine_id": kind}
    for column in value_columns:
        values = group[column].to_numpy(dtype=np.float64)
        if column.startswith("n_"):
            row[column] = int(np.nansum(values))
        elif reducer is None:
            row[column] = harmonic_mean(values)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                row[column] = float(reducer(values)) if values.size else math.nan
    return row


def to_markdown(table: pd.DataFrame, float_format: str = "{:.3f}") -> str:
    """A GitHub Markdown table (no extra dependency); NaN prints as ``n/a``."""
    columns = list(table.columns)

    def cell(value: object) -> str:
        if isinstance(value, float):
            return "n/a" if math.isnan(value) else float_format.format(value)
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(cell(row[c]) for c in columns) + " |")
    return "\n".join(lines)
