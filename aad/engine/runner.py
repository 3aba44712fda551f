"""Run methods over groups of clips; a failing method or group is a row, never the end.

Each group's results are handed to ``after_group`` as soon as the group finishes, so a long
run that dies (or is killed) keeps every finished group on disk.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
from tqdm.auto import tqdm

from aad.data.datamodule import MachineSoundDataModule
from aad.data.splits import Group
from aad.engine.methods import Method, ModelMethod
from aad.engine.results import FAILURE_COLUMNS, SCORE_COLUMNS, clip_table, failure_row

RUN_COLUMNS = ("method", "group", "settings", "n_train", "n_val", "n_test", "seconds")


def say(message: str) -> None:
    """Print a progress line without breaking any active progress bar."""
    tqdm.write(message)


@dataclass
class RunResult:
    """Everything a run produced so far: per-clip scores, failures, one row per fit."""

    clip_scores: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SCORE_COLUMNS))
    failures: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FAILURE_COLUMNS))
    runs: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=RUN_COLUMNS))
    methods: dict[tuple[str, str], Method] = field(default_factory=dict)

    def add(self, frames: list[pd.DataFrame], failures: list[dict], runs: list[dict]) -> None:
        parts = [f for f in (self.clip_scores, *frames) if len(f)]
        if parts:
            self.clip_scores = pd.concat(parts, ignore_index=True)
        if failures:
            new = pd.DataFrame(failures, columns=FAILURE_COLUMNS)
            self.failures = pd.concat(
                [f for f in (self.failures, new) if len(f)], ignore_index=True
            )
        if runs:
            new = pd.DataFrame(runs, columns=RUN_COLUMNS)
            self.runs = pd.concat([f for f in (self.runs, new) if len(f)], ignore_index=True)


def run_groups(
    groups: Sequence[Group],
    data: MachineSoundDataModule,
    build: Callable[[Group], Sequence[Method]],
    *,
    after_group: Callable[[RunResult], None] | None = None,
    evaluate: bool = True,
) -> RunResult:
    """Fit and score (unless ``evaluate`` is false) every method ``build(group)`` returns.

    Models are fitted first (detectors may embed with their latent code); a method that
    raises becomes a failure row with its reason and the others go on.
    """
    result = RunResult()
    for group in groups:
        note = f" [{'; '.join(group.notes)}]" if group.notes else ""
        say(
            f"[aad] {group.label}: {len(group.train)} train, {len(group.val)} validation, "
            f"{len(group.test)} test clips{note}"
        )
        frames, failures, runs = [], [], []
        try:
            methods = list(build(group))
        except Exception as error:  # a bad config for this group: a row, then the next group
            failures.append(failure_row("*", group.label, error))
            say(f"[aad] {group.label}: FAILED to build methods: {failures[-1]['reason']}")
            result.add([], failures, [])
            continue
        bound = data.for_group(group)
        broken: set[str] = set()
        order = sorted(methods, key=lambda m: not isinstance(m, ModelMethod))
        for method in order:
            start = time.perf_counter()
            try:
                latent = getattr(method, "latent", None)
                if latent is not None and latent.name in broken:
                    raise RuntimeError(f"its latent model {latent.name!r} failed")
                method.fit(bound)
                tested = group.test if evaluate else []
                scores = method.score(bound, tested) if tested else []
                frame = clip_table(tested, scores, method.threshold, method=method.name)
                if evaluate and group.skipped:
                    records, reasons = zip(*group.skipped, strict=True)
                    statuses = [f"error: {reason}" for reason in reasons]
                    skipped = clip_table(
                        records,
                        [math.nan] * len(records),
                        method.threshold,
                        method=method.name,
                        status=statuses,
                    )
                    frame = pd.concat([frame, skipped], ignore_index=True)
            except Exception as error:
                broken.add(method.name)
                failures.append(failure_row(method.name, group.label, error))
                say(f"[aad] {method.name:<22} {group.label:<18} FAILED: {failures[-1]['reason']}")
                continue
            seconds = time.perf_counter() - start
            frames.append(frame)
            result.methods[(method.name, group.label)] = method
            runs.append(
                {
                    "method": method.name,
                    "group": group.label,
                    "settings": method.describe(),
                    "n_train": len(group.train),
                    "n_val": len(group.val),
                    "n_test": len(group.test),
                    "seconds": round(seconds, 3),
                }
            )
            say(f"[aad] {method.name:<22} {group.label:<18} {_auc_text(frame)}  ({seconds:.1f} s)")
        rank = {m.name: i for i, m in enumerate(methods)}
        frames.sort(key=lambda f: rank[str(f["method"].iloc[0])] if len(f) else 0)
        result.add(frames, failures, runs)
        if after_group is not None:
            after_group(result)
    return result


def _auc_text(frame: pd.DataFrame) -> str:
    from aad.metrics import binary_metrics

    ok = frame[frame["status"] == "ok"]
    targets = ok["target"].to_numpy()
    if not ((targets == 0).any() and (targets == 1).any()):
        return "AUC n/a"
    return f"AUC {binary_metrics(targets, ok['score'].to_numpy())['auc']:.3f}"
