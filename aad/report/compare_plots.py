"""Figures of the method comparison: ROC curves per machine type, AUC bars per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import roc_auc_score, roc_curve  # noqa: E402

from aad.report.plots import drawable, save_figure  # noqa: E402


def plot_roc_curves(clip_scores: pd.DataFrame, machine_type: str, path: str | Path) -> Path:
    """One PNG: the ROC curve of every method on one machine type (ids pooled).

    ``clip_scores`` needs columns ``method``, ``machine_type``, ``target``, ``score``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = drawable(clip_scores)
    rows = rows[(rows["machine_type"] == machine_type) & (rows["target"] >= 0)]
    figure, axes = plt.subplots(figsize=(5.5, 5))
    for method, group in rows.groupby("method", sort=False):
        targets = group["target"].to_numpy()
        if len(np.unique(targets)) < 2:
            continue
        fpr, tpr, _ = roc_curve(targets, group["score"].to_numpy())
        auc = roc_auc_score(targets, group["score"].to_numpy())
        axes.plot(fpr, tpr, label=f"{method} (AUC {auc:.3f})", linewidth=1.5)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    axes.axvspan(0, 0.1, color="grey", alpha=0.08, label="pAUC region (FPR <= 0.1)")
    axes.set(
        xlabel="false positive rate",
        ylabel="true positive rate",
        title=f"ROC, {machine_type} (ids pooled)",
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(loc="lower right", fontsize=8)
    return save_figure(figure, path, dpi=120)


def plot_auc_bars(summary: pd.DataFrame, path: str | Path, metric: str = "auc") -> Path:
    """One PNG: grouped bars of ``metric`` by machine type (groups) and method (bars).

    ``summary`` has one row per (method, machine_type) with a ``metric`` column.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = summary.pivot(index="machine_type", columns="method", values=metric)
    methods = list(dict.fromkeys(summary["method"]))
    table = table[methods]
    n_types, n_methods = table.shape
    width = 0.8 / max(n_methods, 1)
    positions = np.arange(n_types)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.3 * n_types * n_methods + 3.0), 4.5))
    for index, method in enumerate(methods):
        axes.bar(
            positions + (index - (n_methods - 1) / 2) * width, table[method], width, label=method
        )
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes.set_xticks(positions, table.index)
    axes.set(
        ylabel=metric.upper(), ylim=(0, 1.02), title=f"{metric.upper()} by method and machine type"
    )
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(figure, path, dpi=120)
