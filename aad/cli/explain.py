"""``evaluate.py --ckpt CKPT --explain clip.wav ...``: where in time a clip looks anomalous.

For each clip: ``explain_<stem>.png`` (its log-mel spectrogram above its per-frame scores,
with the clip score and the threshold) and ``explain_<stem>.csv`` (time, frame score). The
clip is scored whole, exactly as ``predict`` scores it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from aad.cli.predict import NON_FINITE, load_for_clips, score_waveform, screen_files
from aad.data.audio import load_waveform
from aad.features import FeatureExtractor
from aad.report.plots import plot_explanation

SPECTROGRAM = {"features": ["mel"], "mel": {"n_mels": 64}}


def explain_clips(
    path: Path,
    clips: list[str],
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """Explain each clip; returns one row per clip (path, score, decision). Clips that
    ``predict`` would not score (unreadable, too short, NaN/Inf, not audio in [-1, 1]) are
    named in one ``ValueError`` after the others are explained."""
    module, channel, min_samples = load_for_clips(path, overrides or {}, device)
    _, bad = screen_files([str(c) for c in clips], module, channel, min_samples)
    spectrogram = FeatureExtractor({**SPECTROGRAM, "sample_rate": module.sample_rate})
    threshold = float(module.threshold)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = []
    for clip in clips:
        if str(clip) in bad:
            continue
        waveform = load_waveform(clip, module.sample_rate, channel, None)
        output = score_waveform(module, waveform)
        if not math.isfinite(float(output.clip_scores[0])):
            bad[str(clip)] = NON_FINITE
            continue
        frames = output.frame_scores[0].cpu().numpy()
        times = module.frame_times(len(frames))
        stem = Path(clip).stem
        pd.DataFrame({"time_s": times, "frame_score": frames}).to_csv(
            out_dir / f"explain_{stem}.csv", index=False
        )
        log_mel = spectrogram(waveform[None])[0].T.numpy()
        score = float(output.clip_scores[0])
        decision = int(score > threshold) if math.isfinite(threshold) else -1
        verdict = {1: "anomaly", 0: "normal", -1: "no threshold"}[decision]
        plot_explanation(
            log_mel,
            waveform.numel() / module.sample_rate,
            times,
            frames,
            out_dir / f"explain_{stem}.png",
            title=f"{stem}: score {score:.3g} ({verdict})",
            clip_score=score,
            threshold=threshold,
        )
        print(f"{clip}: score {score:.6f}, {verdict}; wrote {out_dir}/explain_{stem}.*")
        summary.append({"path": clip, "score": score, "decision": decision})
    if bad:
        listing = "; ".join(f"{clip}: {reason}" for clip, reason in bad.items())
        raise ValueError(f"--explain: {len(bad)} clip(s) not explained: {listing}")
    return pd.DataFrame(summary)
