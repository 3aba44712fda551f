"""THE scoring path: ``test_step``, ``predict_step``, ``evaluate.py`` and ``compare`` all call
:func:`score_batch`, so a clip gets the same score whichever way it is scored.

Scores are per-frame reconstruction errors averaged over the clip; higher = more anomalous.
Scoring always runs in float32 (autocast off), so bf16 training does not change scores.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from aad.thresholds import decide

if TYPE_CHECKING:
    from aad.data.manifest import ClipRecord
    from aad.models.base import AnomalyModule

SCORE_COLUMNS = (
    "path",
    "machine_type",
    "machine_id",
    "domain",
    "label",
    "target",
    "score",
    "decision",
)


@dataclass
class ScoreOutput:
    """Clip scores ``(B,)`` and the per-frame errors ``(B, T)`` they average."""

    clip_scores: torch.Tensor
    frame_errors: torch.Tensor


def score_batch(module: AnomalyModule, batch: dict[str, Any]) -> ScoreOutput:
    """Score one batch: ``batch["features"]`` if present (set by ``on_after_batch_transfer``),
    else features computed from ``batch["waveform"]`` on the module's device."""
    features = batch.get("features")
    if features is None:
        features = module.prepare_features(batch["waveform"].to(module.device))
    with torch.no_grad(), torch.autocast(device_type=features.device.type, enabled=False):
        frame_errors = module.frame_errors(features.float()).float()
    return ScoreOutput(clip_scores=frame_errors.mean(dim=1), frame_errors=frame_errors)


def score_dataloader(
    module: AnomalyModule, dataloader: Iterable[dict[str, Any]], *, keep_frames: bool = False
) -> dict[str, np.ndarray]:
    """Score every batch of a loader in eval mode, outside Lightning.

    Returns ``{"index", "target", "score"}`` arrays (and ``"frame_errors"`` when asked),
    in loader order.
    """
    was_training = module.training
    module.eval()
    indices, targets, scores, frames = [], [], [], []
    try:
        for batch in dataloader:
            output = score_batch(module, batch)
            scores.append(output.clip_scores.cpu().numpy())
            targets.append(batch["target"].cpu().numpy())
            indices.append(batch["index"].cpu().numpy())
            if keep_frames:
                frames.append(output.frame_errors.cpu().numpy())
    finally:
        module.train(was_training)
    if not scores:
        raise ValueError("nothing to score: the data loader yielded no batches")
    result = {
        "index": np.concatenate(indices),
        "target": np.concatenate(targets),
        "score": np.concatenate(scores).astype(np.float64),
    }
    if keep_frames:
        result["frame_errors"] = np.concatenate(frames)
    return result


def scores_frame(
    records: Sequence[ClipRecord],
    indices: np.ndarray,
    scores: np.ndarray,
    threshold: float,
) -> pd.DataFrame:
    """Per-clip table (``SCORE_COLUMNS``) for ``scores.csv`` and ``aad.metrics.metrics_table``."""
    rows = []
    for index, score in zip(np.asarray(indices).tolist(), np.asarray(scores).tolist(), strict=True):
        record = records[int(index)]
        rows.append(
            {
                "path": record.path,
                "machine_type": record.machine_type,
                "machine_id": record.machine_id,
                "domain": record.domain,
                "label": record.label,
                "target": record.target,
                "score": float(score),
            }
        )
    frame = pd.DataFrame(rows, columns=list(SCORE_COLUMNS[:-1]))
    frame["decision"] = decide(frame["score"].to_numpy(), threshold)
    return frame
