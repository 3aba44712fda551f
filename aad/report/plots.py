"""PNG figures: ROC and PR curves per machine type, score histograms, frame-error curves."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.metrics import (  # noqa: E402
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)


def drawable(group: pd.DataFrame) -> pd.DataFrame:
    """The rows a figure can show: a finite score (clips that could not be scored are rows
    with NaN scores and a status; they are reported in the tables, not drawn)."""
    return group[np.isfinite(group["score"].to_numpy(dtype=float))]


def _labelled(group: pd.DataFrame) -> pd.DataFrame:
    group = drawable(group)
    return group[group["target"] >= 0]


def save_figure(figure: plt.Figure, path: str | Path, dpi: int = 100) -> Path:
    """Lay out, write as PNG and close a figure; returns the path."""
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return Path(path)


def plot_roc_pr(clip_scores: pd.DataFrame, out_dir: str | Path) -> list[Path]:
    """``roc_<type>.png`` and ``pr_<type>.png``: one curve per machine id.

    Types without both classes are skipped (nothing to draw). Returns the files written.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for machine_type, group in clip_scores.groupby("machine_type", sort=True):
        group = _labelled(group)
        if group["target"].nunique() < 2:
            continue
        fig_roc, ax_roc = plt.subplots(figsize=(4.5, 4.5))
        fig_pr, ax_pr = plt.subplots(figsize=(4.5, 4.5))
        for machine_id, clips in group.groupby("machine_id", sort=True):
            if clips["target"].nunique() < 2:
                continue
            fpr, tpr, _ = roc_curve(clips["target"], clips["score"])
            precision, recall, _ = precision_recall_curve(clips["target"], clips["score"])
            auc = roc_auc_score(clips["target"], clips["score"])
            ap = average_precision_score(clips["target"], clips["score"])
            ax_roc.plot(fpr, tpr, label=f"{machine_id} (AUC {auc:.3f})")
            ax_pr.plot(recall, precision, label=f"{machine_id} (AP {ap:.3f})")
        ax_roc.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        ax_roc.axvline(0.1, color="grey", linestyle="--", linewidth=0.8)
        ax_roc.set(
            xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {machine_type}"
        )
        ax_pr.set(xlabel="recall", ylabel="precision", title=f"Precision-recall: {machine_type}")
        for fig, ax, name in ((fig_roc, ax_roc, "roc"), (fig_pr, ax_pr, "pr")):
            ax.legend(loc="lower right" if name == "roc" else "lower left", fontsize=8)
            written.append(save_figure(fig, out_dir / f"{name}_{machine_type}.png"))
    return written


def plot_score_histograms(
    clip_scores: pd.DataFrame, out_dir: str | Path, threshold: float | dict[str, float]
) -> list[Path]:
    """``hist_<type>.png``: score histograms of normal and anomalous clips, threshold line.

    ``threshold`` is one value or a mapping machine type -> value.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for machine_type, group in drawable(clip_scores).groupby("machine_type", sort=True):
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        bins = np.histogram_bin_edges(group["score"], bins=30)
        for target, name, color in (
            (0, "normal", "tab:blue"),
            (1, "anomaly", "tab:red"),
            (-1, "unlabelled", "tab:grey"),
        ):
            values = group.loc[group["target"] == target, "score"]
            if len(values):
                ax.hist(values, bins=bins, alpha=0.6, color=color, label=f"{name} ({len(values)})")
        value = threshold.get(machine_type, math.nan) if isinstance(threshold, dict) else threshold
        if value is not None and math.isfinite(value):
            ax.axvline(value, color="black", linestyle="--", label=f"threshold {value:.3g}")
        ax.set(
            xlabel="anomaly score (higher = more anomalous)",
            ylabel="clips",
            title=f"Scores: {machine_type}",
        )
        ax.legend(fontsize=8)
        written.append(save_figure(fig, out_dir / f"hist_{machine_type}.png"))
    return written


def plot_explanation(
    log_mel: np.ndarray,
    duration_s: float,
    times_s: np.ndarray,
    frame_scores: np.ndarray,
    path: str | Path,
    *,
    title: str = "",
    clip_score: float | None = None,
    threshold: float | None = None,
) -> Path:
    """The clip's log-mel spectrogram ``(n_mels, frames)`` above its per-frame scores over
    time, with the clip score and the decision threshold (a clip whose score is above the
    threshold is called anomalous)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 5), sharex=True, gridspec_kw={"height_ratios": [3, 2]}
    )
    top.imshow(
        log_mel,
        origin="lower",
        aspect="auto",
        cmap="magma",
        extent=(0.0, duration_s, 0, log_mel.shape[0]),
    )
    top.set(ylabel="mel band", title=title)
    bottom.plot(times_s, frame_scores, linewidth=1, label="frame score")
    for value, colour, name in (
        (clip_score, "tab:blue", "clip score"),
        (threshold, "tab:red", "threshold"),
    ):
        if value is not None and math.isfinite(value):
            bottom.axhline(
                value, color=colour, linestyle="--", linewidth=1, label=f"{name} {value:.3g}"
            )
    bottom.legend(fontsize=8, loc="upper right")
    bottom.set(xlabel="time (s)", ylabel="anomaly score", xlim=(0.0, duration_s))
    return save_figure(fig, path)
