"""``evaluate.py watch``: score a live stream every hop over the last window, and alert.

    arecord -f S16_LE -r 16000 -c 1 | python evaluate.py watch --ckpt export/model.json --input -
    python evaluate.py watch --ckpt CKPT --input recording.wav --log watch.csv   # tail a WAV
    python evaluate.py watch --ckpt export/ --input incoming/                     # new files

``--ckpt`` is an export (its JSON, ``.onnx``/``.pt`` or folder) or a checkpoint. A stream
(stdin or a WAV being written) is scored every ``--hop_seconds`` of audio over the last
``--window_seconds`` (default: the model's clip length), once a whole window has arrived;
a folder's files are scored whole, each once complete. One line per hop (stream time, score,
decision), ``ALERT`` when the decision flips to anomaly and ``CLEAR`` when it flips back, an
optional CSV log. The command stops when the stream ends (exit 0) or stalls for
``--stall_seconds`` (exit 1), and says which.
"""

from __future__ import annotations

import csv
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from jsonargparse import ArgumentParser

from aad.export.runtime import Scorer, load_scorer
from aad.export.stream import EndOfStream, FolderSource, PipeSource, WavTailSource

LOG_COLUMNS = ("time_s", "clock", "source", "score", "decision", "event")
BATCH = 16
"""Windows scored per call when audio arrives faster than real time (a replayed file)."""


def watch_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="evaluate.py watch", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=str, required=True, help="export or checkpoint")
    parser.add_argument("--input", type=str, required=True, help="'-' (stdin), WAV or folder")
    parser.add_argument("--hop_seconds", type=float, default=1.0)
    parser.add_argument("--window_seconds", type=float | None, default=None)
    parser.add_argument("--stall_seconds", type=float, default=10.0)
    parser.add_argument("--poll_seconds", type=float, default=0.2)
    parser.add_argument("--log", type=str | None, default=None, help="CSV log file")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for scoring")
    parser.add_argument("--channels", type=int, default=1, help="stdin channels (first used)")
    parser.add_argument("--from_end", type=bool, default=False, help="WAV: skip what it holds")
    parser.add_argument("--skip_existing", type=bool, default=False, help="folder: new only")
    parser.add_argument("--max_hops", type=int | None, default=None, help="stop after N lines")
    return parser


class Monitor:
    """Turns scores into lines, ALERT/CLEAR events and log rows."""

    def __init__(self, scorer: Scorer, log: str | None) -> None:
        self.scorer = scorer
        self.threshold = scorer.threshold
        self.state = 0
        self.rows: list[dict[str, Any]] = []
        self.alerts = 0
        self.log_handle = open(log, "w", newline="") if log else None  # noqa: SIM115
        self.writer = csv.DictWriter(self.log_handle, LOG_COLUMNS) if self.log_handle else None
        if self.writer:
            self.writer.writeheader()

    def record(self, time_s: float, source: str, score: float) -> None:
        decision = -1 if self.threshold is None else int(score > self.threshold)
        event = ""
        if decision == 1 and self.state != 1:
            event, self.alerts = "alert", self.alerts + 1
        elif decision == 0 and self.state == 1:
            event = "clear"
        if decision >= 0:
            self.state = decision
        verdict = {1: "ANOMALY", 0: "normal"}.get(decision, "n/a")
        where = f"  {source}" if source else ""
        say(f"{time_s:10.2f}s  score {score:12.6f}  {verdict}{where}")
        if event == "alert":
            say(
                f"ALERT at {time_s:.2f}s: anomaly (score {score:.6g} > threshold "
                f"{self.threshold:.6g}){where}"
            )
        elif event == "clear":
            say(
                f"CLEAR at {time_s:.2f}s: back to normal (score {score:.6g} <= threshold "
                f"{self.threshold:.6g}){where}"
            )
        row = {
            "time_s": round(time_s, 6),
            "clock": datetime.now(timezone.utc).isoformat(),
            "source": source,
            "score": score,
            "decision": decision,
            "event": event,
        }
        self.rows.append(row)
        if self.writer:
            self.writer.writerow(row)
            self.log_handle.flush()

    def close(self) -> pd.DataFrame:
        if self.log_handle:
            self.log_handle.close()
        return pd.DataFrame(self.rows, columns=list(LOG_COLUMNS))


def say(text: str) -> None:
    print(text, flush=True)


def watch_stream(source: Any, scorer: Scorer, monitor: Monitor, args: Any) -> str:
    """Hop over a sample stream; returns ``"ended"``, ``"stalled"`` or ``"max_hops"``."""
    rate = scorer.sample_rate
    window = int(round(args.window_seconds * rate)) if args.window_seconds else scorer.clip_samples
    hop = max(int(round(args.hop_seconds * rate)), 1)
    if window < scorer.min_samples:
        raise ValueError(f"window of {window} samples < the {scorer.min_samples} the model needs")
    buffer, start, total, next_end = np.zeros(0, np.float32), 0, 0, window
    last_data = time.monotonic()
    say(
        f"watching {source.description} with {scorer.label}: {window / rate:g} s window every "
        f"{hop / rate:g} s at {rate} Hz, threshold {scorer.threshold}"
    )
    while True:
        try:
            chunk = source.read(args.poll_seconds)
        except EndOfStream as end:
            leftover = (total - (next_end - hop)) / rate if total >= window else total / rate
            say(
                f"stream ended at {total / rate:.2f}s ({end}): {len(monitor.rows)} hop(s), "
                f"{monitor.alerts} alert(s); the last {leftover:.2f}s not scored"
            )
            return "ended"
        now = time.monotonic()
        if chunk.size:
            last_data = now
            buffer = np.concatenate([buffer, chunk])
            total += chunk.size
        elif now - last_data >= args.stall_seconds:
            say(
                f"STALLED: no audio for {args.stall_seconds:g}s (stream time {total / rate:.2f}s"
                f"); stopping after {len(monitor.rows)} hop(s), {monitor.alerts} alert(s)"
            )
            return "stalled"
        ends = []
        while next_end <= total:
            ends.append(next_end)
            next_end += hop
        for first in range(0, len(ends), BATCH):
            batch_ends = ends[first : first + BATCH]
            windows = np.stack([buffer[e - window - start : e - start] for e in batch_ends])
            scores = scorer.score(windows).clip_scores
            for end, score in zip(batch_ends, scores, strict=True):
                monitor.record(end / rate, "", float(score))
                if args.max_hops and len(monitor.rows) >= args.max_hops:
                    return "max_hops"
        keep_from = next_end - window  # the next window's first sample
        if keep_from > start:
            buffer, start = buffer[keep_from - start :], keep_from


def watch_folder(source: FolderSource, scorer: Scorer, monitor: Monitor, args: Any) -> str:
    """Score each new complete file whole; returns ``"stalled"`` or ``"max_hops"``."""
    import soundfile as sf

    began = last_file = time.monotonic()
    say(f"watching {source.description} with {scorer.label}, threshold {scorer.threshold}")
    while True:
        ready = source.poll()
        now = time.monotonic()
        for path in ready:
            last_file = now
            try:
                audio, rate = sf.read(path, dtype="float32", always_2d=True)
                if rate != scorer.sample_rate:
                    raise ValueError(f"{rate} Hz, the model scores {scorer.sample_rate} Hz")
                score = float(scorer.score(audio[:, 0]).clip_scores[0])
            except Exception as error:  # one bad file never stops the watch
                say(f"{now - began:10.2f}s  error: {path}: {type(error).__name__}: {error}")
                continue
            monitor.record(now - began, str(path), score)
            if args.max_hops and len(monitor.rows) >= args.max_hops:
                return "max_hops"
        if now - last_file >= args.stall_seconds:
            say(
                f"STALLED: no new complete file for {args.stall_seconds:g}s; stopping after "
                f"{len(monitor.rows)} file(s), {monitor.alerts} alert(s)"
            )
            return "stalled"
        time.sleep(args.poll_seconds)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Watch until the input ends or stalls; returns the log (``attrs["failures"]`` = 1 when
    it stalled, so ``evaluate.py`` exits 1)."""
    parser = watch_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.hop_seconds <= 0 or args.stall_seconds <= 0 or args.poll_seconds <= 0:
        parser.error("--hop_seconds, --stall_seconds and --poll_seconds must be > 0")
    if args.threads:
        try:
            import torch

            torch.set_num_threads(int(args.threads))
        except ImportError:  # an ONNX-only box
            pass
    scorer = load_scorer(args.ckpt, threads=args.threads, clip_seconds=args.window_seconds)
    monitor = Monitor(scorer, args.log)
    source: Any = None
    try:
        if args.input == "-":
            source = PipeSource(sys.stdin.buffer, args.channels)
            outcome = watch_stream(source, scorer, monitor, args)
        elif Path(args.input).is_dir():
            source = FolderSource(args.input, args.skip_existing)
            outcome = watch_folder(source, scorer, monitor, args)
        elif Path(args.input).is_file():
            source = WavTailSource(args.input, scorer.sample_rate, args.from_end)
            outcome = watch_stream(source, scorer, monitor, args)
        else:
            raise FileNotFoundError(f"--input {args.input}: no such file or folder ('-' = stdin)")
    except KeyboardInterrupt:
        say("stopped by the user")
        outcome = "interrupted"
    finally:
        if hasattr(source, "close"):
            source.close()
        table = monitor.close()
    table.attrs["outcome"] = outcome
    table.attrs["failures"] = int(outcome == "stalled")
    return table


if __name__ == "__main__":
    sys.exit(1 if main(sys.argv[1:]).attrs.get("failures") else 0)
