"""``evaluate.py predict --ckpt CKPT FILES_OR_FOLDERS...``: score loose clips, one row each.

Every input file gets a row in ``predictions.csv`` (``path, score, decision, status``): a bad
file (unreadable, NaN/Inf, too short, a non-finite score) is named in one warning and keeps
its row with the reason, the good files are always scored and written, and the command exits
with status 1 when any file failed. Clips are scored whole (longer than the training clips
included); one shorter than half the training clip length is refused.
"""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from jsonargparse import ArgumentParser

from aad.checkpoints import data_config, load_module, resolve_checkpoints
from aad.data.audio import load_waveform, screen_clips
from aad.data.datamodule import MIN_CLIP_FRACTION, MachineSoundDataModule
from aad.data.files import collect_wav_files
from aad.data.manifest import ClipRecord
from aad.embeddings import resolve_device
from aad.models.base import AnomalyModule
from aad.report.tables import check_writable
from aad.scoring import ScoreOutput

PREDICTION_COLUMNS = ("path", "score", "decision", "status")
NON_FINITE = "non-finite score (is this audio in [-1, 1]?)"


def predict_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="evaluate.py predict", description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="+", type=str, help="WAV files or folders")
    parser.add_argument("--ckpt", type=str, required=True, help="checkpoint or run folder")
    parser.add_argument("--out", type=str, default="results/predict", help="output folder")
    parser.add_argument("--device", type=str, default="auto")
    parser.add_argument("--torch_threads", type=int | None, default=None)
    parser.add_class_arguments(MachineSoundDataModule, "data", help="e.g. --data.channel mean")
    return parser


def load_for_clips(
    path: Path, overrides: dict[str, Any], device: str = "auto"
) -> tuple[AnomalyModule, int | str, int]:
    """The checkpoint's module on ``device``, and how to load loose clips as its training data
    loaded them: ``(module, channel, min_samples)``."""
    module, checkpoint = load_module(path)
    module.to(resolve_device(device))
    data = data_config(checkpoint, overrides)
    seconds = data.get("clip_seconds")
    minimum = int(seconds * module.sample_rate * MIN_CLIP_FRACTION) if seconds else 0
    return module, data.get("channel", 0), max(minimum, module.features.min_samples())


def screen_files(
    paths: list[str], module: AnomalyModule, channel: int | str, min_samples: int
) -> tuple[list[ClipRecord], dict[str, str]]:
    """Loose clips as records, and why each one that cannot be scored cannot (unreadable,
    too short, NaN/Inf, not audio in [-1, 1]: ``screen_clips``'s rules, silence allowed)."""
    records = [ClipRecord(str(p), "files", "unknown", "", "test", "unknown") for p in paths]
    screen = screen_clips(
        records,
        module.sample_rate,
        channel,
        min_samples=min_samples,
        reject_silent=False,
        progress=False,
    )
    return records, {r.record.path: r.reason for r in screen.rejected}


def score_clip(module: AnomalyModule, path: str | Path, channel: int | str) -> ScoreOutput:
    """Score one whole clip (as ``evaluate.py`` scores test clips: the same ``score``)."""
    return score_waveform(module, load_waveform(path, module.sample_rate, channel, None))


def score_waveform(module: AnomalyModule, waveform: torch.Tensor) -> ScoreOutput:
    """Score one whole decoded clip ``(S,)`` of unknown id."""
    batch = {
        "waveform": waveform[None].to(module.device),
        "target": torch.tensor([-1]),
        "index": torch.tensor([0]),
        "class_index": torch.tensor([-1]),
        "domain": torch.tensor([-1]),
    }
    with torch.no_grad():
        return module.score(batch)


def predict_files(
    path: Path,
    inputs: list[str],
    out: Path,
    overrides: dict[str, Any] | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """Score every WAV file of ``inputs`` with one checkpoint; write ``predictions.csv``."""
    check_writable(out)
    module, channel, min_samples = load_for_clips(path, overrides or {}, device)
    found = collect_wav_files(inputs)
    if not found.files and not found.skipped:
        raise FileNotFoundError(f"no .wav files in {', '.join(map(str, inputs))}")
    records, rejected = screen_files(found.files, module, channel, min_samples)
    status = {path: f"error: {reason}" for path, reason in rejected.items()}
    status.update({str(p): f"error: {reason}" for p, reason in found.skipped})
    rows = []
    for record in records:
        score = math.nan
        if record.path not in status:
            try:
                score = float(score_clip(module, record.path, channel).clip_scores[0])
                if not math.isfinite(score):
                    status[record.path] = f"error: {NON_FINITE}"
            except Exception as error:  # one bad clip never stops the others
                status[record.path] = f"error: {type(error).__name__}: {error}"
        rows.append({"path": record.path, "score": score})
    rows += [{"path": str(p), "score": math.nan} for p, _ in found.skipped]
    table = pd.DataFrame(rows, columns=["path", "score"])
    table["status"] = [status.get(p, "ok") for p in table["path"]]
    scores = torch.as_tensor(np.nan_to_num(table["score"].to_numpy(), nan=-np.inf))
    table["decision"] = module.decide(scores).numpy()
    table.loc[table["status"] != "ok", "decision"] = -1
    table = table[list(PREDICTION_COLUMNS)]
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "predictions.csv", index=False, float_format="%.8g")
    threshold = float(module.threshold)
    print(f"threshold {threshold:.6g} ({path}); {len(table)} file(s) -> {out}/predictions.csv")
    for row in table.itertuples():
        verdict = {1: "anomaly", 0: "normal"}.get(int(row.decision), "error")
        print(f"{row.score:12.6f}  {verdict:8s}  {row.path}")
    bad = table[table["status"] != "ok"]
    if len(bad):
        listing = "\n  ".join(f"{r.path}: {r.status}" for r in bad.itertuples())
        warnings.warn(f"{len(bad)} of {len(table)} file(s) not scored:\n  {listing}", stacklevel=2)
    table.attrs["failures"] = len(bad)
    return table


def files_last(argv: list[str]) -> list[str]:
    """``argv`` with the positional files moved after the options (every option of predict
    takes a value), so files may come before, between or after options."""
    options, files, expects_value = [], [], False
    for token in argv:
        if expects_value:
            options.append(token)
            expects_value = False
        elif token.startswith("--"):
            options.append(token)
            expects_value = "=" not in token
        else:
            files.append(token)
    return [*options, *files]


def main(argv: list[str]) -> pd.DataFrame:
    parser = predict_parser()
    argv = files_last(argv)
    args = parser.parse_args(argv)
    given = parser.parse_args(argv, defaults=False).get("data")
    if args.torch_threads:
        torch.set_num_threads(int(args.torch_threads))
    (path, *_) = resolve_checkpoints([args.ckpt])
    overrides = dict(given.as_dict()) if given is not None else {}
    return predict_files(path, args.inputs, Path(args.out), overrides, args.device)


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]).attrs.get("failures") else 0)
