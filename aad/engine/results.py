"""The one per-clip score table every command writes (``scores.csv``) and measures."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from aad.data.manifest import ClipRecord
from aad.thresholds import decide

SCORE_COLUMNS = (
    "method",
    "machine_type",
    "machine_id",
    "domain",
    "path",
    "label",
    "target",
    "score",
    "decision",
    "status",
)
"""``status`` is ``ok`` or why the clip has no score (its ``score`` is then NaN)."""
FAILURE_COLUMNS = ("method", "group", "reason")


def clip_table(
    records: Sequence[ClipRecord],
    scores: Sequence[float] | np.ndarray,
    threshold: float,
    *,
    method: str = "",
    status: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-clip rows (:data:`SCORE_COLUMNS`); decision -1 (none) for a NaN score or when
    there is no threshold."""
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) != len(records):
        raise ValueError(f"{len(scores)} scores for {len(records)} clips")
    status = list(status) if status is not None else ["ok"] * len(records)
    finite = np.isfinite(scores)
    status = [
        s if ok or s != "ok" else "error: non-finite score"
        for s, ok in zip(status, finite, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "method": method,
            "machine_type": [r.machine_type for r in records],
            "machine_id": [r.machine_id for r in records],
            "domain": [r.domain for r in records],
            "path": [r.path for r in records],
            "label": [r.label for r in records],
            "target": np.array([r.target for r in records], dtype=np.int64),
            "score": scores,
            "decision": decide(np.where(finite, scores, -np.inf), threshold),
            "status": status,
        },
        columns=list(SCORE_COLUMNS),
    )
    frame.loc[~finite, "decision"] = -1
    if not np.isfinite(threshold):  # no threshold (training stopped before validation)
        frame["decision"] = -1
    return frame


def scored(clip_scores: pd.DataFrame) -> pd.DataFrame:
    """The rows with a score (``status == "ok"``): what the metrics are computed on."""
    if "status" not in clip_scores.columns:
        return clip_scores
    return clip_scores[clip_scores["status"] == "ok"]


def failure_row(method: str, group: str, error: BaseException | str) -> dict[str, str]:
    """One row of ``failures.csv``: which method failed on which group, and why."""
    reason = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return {"method": method, "group": group, "reason": " ".join(str(reason).split())}
