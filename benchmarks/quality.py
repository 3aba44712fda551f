"""aad's real-data yardstick: every aad method and the PyOD peers, same clips, same metric.

    python benchmarks/quality.py                                  # every set, every method
    python benchmarks/quality.py --sets p1 mimii_mini --skip-peers --out results/q

Sets (one model per machine type, ids pooled; train = normal clips only):

- ``p1``: ``dcase2020-mini`` (test clips only): per type, half the normal clips (sorted by
  path, ``random.Random(0).sample``) train, the other normals + every anomaly test
  (:func:`aad.data.splits.borrow_test_normals` with 0.5, seed 0).
- ``slider``: ``dcase2020-slider-id00``: its 75 training clips; 5 normal + 4 anomalous test.
- ``mimii_mini``: raw MIMII, channel 0: the MIMII baseline split puts each id's one normal
  clip in test beside its one abnormal clip, so every clip is a test clip; then the P1
  borrowing rule (0.5, seed 0) per type: 2 of 4 normals train, 2 normals + 4 abnormals test.
- ``synthetic_hard``: the hard synthetic set, reduced (``SYNTHETIC_HARD``: 4 types x 3 ids,
  8 training and 5 + 5 test clips per id, 10 s), generated under ``data/`` when missing.

Writes ``<out>/quality.md`` (AUC and pAUC per method x set x type, mean per set with a 95 %
bootstrap interval), ``quality.csv`` (every number), ``scores.csv`` (every clip's score),
``quality.png`` (mean AUC per method per set with the interval). A method that fails on a
set is a row marked failed with its reason; the run goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from aad.data.readers import read_manifest  # noqa: E402
from aad.data.splits import Group, borrow_test_normals, make_groups  # noqa: E402
from aad.metrics import binary_metrics, to_markdown  # noqa: E402
from aad.report.plots import save_figure  # noqa: E402

try:
    from benchmarks.peers import PEERS, missing_peer_packages, peer_scores
except ModuleNotFoundError:  # run as a script: benchmarks/ is sys.path[0]
    from peers import PEERS, missing_peer_packages, peer_scores

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("AAD_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
AAD_CONFIG = REPO_ROOT / "configs" / "compare.yaml"
SETS = ("p1", "slider", "mimii_mini", "synthetic_hard")
BORROW_FRACTION = 0.5
COMPARE_THREADS = 1  # compare and the peers run side by side: one core each
TABLE_COLUMNS = (
    "set method machine_type status n_normal n_anomaly auc pauc ap auc_low auc_high reason"
).split()
CLIP_COLUMNS = ("method", "set", "machine_type", "machine_id", "path", "target", "score")
SYNTHETIC_HARD = {  # 3 ids (the classifier's setting), fewer clips: fits the time budget
    "machine_ids": ("id_00", "id_02", "id_04"),
    "n_train": 8,
    "n_test_normal": 5,
    "n_test_anomaly": 5,
    "duration_s": 10.0,
}
SYNTHETIC_HARD_QUICK = {
    **SYNTHETIC_HARD,
    "machine_types": ("fan", "valve"),
    "n_train": 6,
    "n_test_normal": 4,
    "n_test_anomaly": 4,
}


QUICK_HELP = "no slider set, a smaller synthetic set, 200 bootstrap resamples"
HEADER = (
    "# aad quality: aad methods and PyOD peers on real recordings\n\n"
    "`python benchmarks/quality.py {command}`, {date}, {cores} CPU cores (load average at the "
    "end: {load}), seed {seed}. One model "
    "per machine type (ids pooled); AUC and pAUC (max FPR 0.1) by aad.metrics.binary_metrics; "
    "mean = arithmetic mean over types; interval: 2.5/97.5 % percentiles of {n} bootstrap "
    "resamples of the test clips within each type and class (seeded, paired across methods)."
)

TIMING_NOTE = (
    "seconds: wall clock of each part. Parts run on two slots, one core each: one runs aad's "
    "compare per set (a subprocess, one torch thread), the other the peers (this process, "
    "one torch thread) and then takes over compare runs still waiting; so parts overlap. "
    "The total row also gives the CPU time of the whole run (this process and compare, all "
    "threads). for_audio_balanced reuses the 74 features for_audio_fast computed."
)


class SetUnavailableError(RuntimeError):
    """A set's data (or the generator it needs) is missing: the set is skipped with a note."""


@dataclass
class EvalSet:
    """One set: its groups (the clip lists every method gets) and compare's data overrides."""

    name: str
    root: Path
    groups: list[Group]
    overrides: list[str]
    protocol: str
    channel: int = 0


def build_set(name: str, shared: Path = SHARED_DATA, quick: bool = False) -> EvalSet:
    """The groups of set ``name``; :class:`SetUnavailableError` when its data is absent."""
    seed = 0
    if name == "synthetic_hard":
        from aad.data import synthetic

        sizes = SYNTHETIC_HARD_QUICK if quick else SYNTHETIC_HARD
        # the folder is keyed by the sizes and the profile: a changed profile regenerates
        key = repr((sorted(sizes.items()), synthetic.difficulty_profile("hard"), seed))
        digest = hashlib.sha1(key.encode()).hexdigest()[:8]
        root = REPO_ROOT / "data" / f"synthetic_hard_quality_{digest}"
        synthetic.generate_if_missing(root, difficulty="hard", seed=seed, **sizes)
        manifest = read_manifest(root, "dcase2020")
        protocol = (
            'generated train/test split: generate_dataset(difficulty="hard", '
            + ", ".join(f"{k}={v}" for k, v in sizes.items())
            + ")"
        )
        overrides = [f"--data.root={root}"]
    else:
        folder = {
            "p1": "dcase2020-mini",
            "slider": "dcase2020-slider-id00",
            "mimii_mini": "mimii-mini",
        }[name]
        root = (shared / folder).absolute()
        if not root.is_dir():
            raise SetUnavailableError(f"{root} not found (set AAD_SHARED_DATA)")
        overrides = [f"--data.root={root}"]
        if name == "slider":
            manifest = read_manifest(root, "dcase2020")
            protocol = "the set's own 75 training clips; its 5 normal + 4 anomalous test clips"
        else:
            layout = "mimii" if name == "mimii_mini" else "dcase2020"
            manifest = read_manifest(root, layout, seed=seed)
            if any(r.split == "train" for r in manifest):
                raise SetUnavailableError(f"{root}: expected test clips only")
            manifest = borrow_test_normals(manifest, BORROW_FRACTION, seed=seed)
            overrides.append(f"--data.train_from_test={BORROW_FRACTION}")
            protocol = (
                f"every clip a test clip; per type a seeded half of the normals "
                f"(borrow_test_normals({BORROW_FRACTION}, seed={seed})) train"
            )
            if name == "mimii_mini":
                overrides.append("--data.channel=0")
                protocol = "MIMII split (all clips test), channel 0; then " + protocol
    groups = make_groups(manifest, per_id=False, val_fraction=0.0, seed=seed)
    return EvalSet(name, root, groups, overrides, protocol)


# ----------------------------------------------------------------------------- aad
def aad_method_specs(config: Path = AAD_CONFIG) -> list[dict]:
    """The method entries of compare's config (following ``extends``)."""
    spec = yaml.safe_load(config.read_text()) or {}
    if "methods" not in spec and spec.get("extends"):
        return aad_method_specs(config.parent / spec["extends"])
    return list(spec.get("methods") or [])


def aad_clip_scores(
    set_name: str, data_overrides: list[str], out: Path, *, methods: list[str] | None = None
) -> pd.DataFrame:
    """Run aad's compare on one set: its per-clip scores (method, machine_type, machine_id,
    path, target, score); ``attrs["failures"]``: what compare reported failed (method,
    machine_type, reason). ``methods``: a subset of compare.yaml's names (default: all).
    The ONE place that knows how compare is called and what it writes."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "aad.compare", "--config", str(AAD_CONFIG), "--out", str(out)]
    command.append(f"--torch_threads={COMPARE_THREADS}")
    if methods is not None:
        specs = aad_method_specs()
        wanted = set(methods) | {s.get("latent_model") for s in specs if s["name"] in methods}
        command.append("--methods=" + json.dumps([s for s in specs if s["name"] in wanted]))
    for stale in ("scores.csv", "failures.csv"):
        (out / stale).unlink(missing_ok=True)
    log = out / "compare.log"
    with log.open("w") as handle:
        done = subprocess.run(
            [*command, *data_overrides], stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT
        )
    if not (out / "scores.csv").exists():  # exit 1 with scores: some method/group failed
        lines = [line for line in log.read_text().splitlines() if line.strip()]
        raise RuntimeError(
            f"aad.compare exited {done.returncode} on {set_name} without scores: "
            f"{lines[-1] if lines else 'no output'} (log: {log})"
        )
    scores = pd.read_csv(out / "scores.csv")
    scores = scores[["method", "machine_type", "machine_id", "path", "target", "score"]]
    failures = []
    if (out / "failures.csv").exists():
        for row in pd.read_csv(out / "failures.csv").itertuples():
            for method in methods or [s["name"] for s in aad_method_specs()]:
                if row.method in (method, "*"):
                    machine_type = str(row.group).split("/")[0]
                    failures.append(
                        {
                            "method": method,
                            "machine_type": machine_type,
                            "reason": f"aad.compare: {row.reason}",
                        }
                    )
    scores.attrs["failures"] = failures
    return scores


def clip_mismatch(frame: pd.DataFrame, group: Group) -> str | None:
    """Why ``frame`` (one method, one type) did not score exactly the group's test clips."""
    expected = {os.path.realpath(r.path) for r in group.test}
    got = {os.path.realpath(p) for p in frame["path"]}
    if got == expected and len(frame) == len(expected):
        return None
    extra, missing = sorted(got - expected), sorted(expected - got)
    example = (extra or missing or ["duplicate rows"])[0]
    return (
        f"scored {len(frame)} clips, the harness split has {len(expected)} "
        f"({len(extra)} extra, {len(missing)} missing, e.g. {example})"
    )


def aad_rows(
    aad: pd.DataFrame, methods: list[str], eval_set: EvalSet
) -> tuple[list[pd.DataFrame], list[dict]]:
    """Split compare's scores into per method x type frames, checked against the harness
    split; compare's own failures and clip-list mismatches become failure rows."""
    reported = {(f["method"], f["machine_type"]): f["reason"] for f in aad.attrs["failures"]}
    frames, failures = [], []
    for method in methods:
        for group in eval_set.groups:
            part = aad[(aad["method"] == method) & (aad["machine_type"] == group.machine_type)]
            problem = reported.get((method, group.machine_type))
            if problem is None and part.empty:
                problem = "no scores in aad.compare's scores.csv"
            problem = problem or clip_mismatch(part, group)
            if problem:
                failures.append(_failure(eval_set.name, method, group.machine_type, problem))
            else:
                frames.append(part.assign(set=eval_set.name)[list(CLIP_COLUMNS)])
    return frames, failures


# ----------------------------------------------------------------------------- peers
def run_peer(peer: str, eval_set: EvalSet, seed: int) -> tuple[list[pd.DataFrame], list[dict]]:
    """One peer on every group of a set: score frames and failure rows (per machine type)."""
    frames, failures = [], []
    for group in eval_set.groups:
        train, test = [r.path for r in group.train], [r.path for r in group.test]
        try:
            scores = peer_scores(peer, train, test, seed=seed, channel=eval_set.channel)
        except Exception as err:  # a failing peer is a failed row, never a crash
            failures.append(_failure(eval_set.name, peer, group.machine_type, err))
            continue
        ids, targets = [r.machine_id for r in group.test], [r.target for r in group.test]
        columns = (peer, eval_set.name, group.machine_type, ids, test, targets, scores)
        frames.append(pd.DataFrame(dict(zip(CLIP_COLUMNS, columns, strict=True))))
    return frames, failures


def _failure(set_name: str, method: str, machine_type: str, reason: object) -> dict:
    text = f"{type(reason).__name__}: {reason}" if isinstance(reason, Exception) else str(reason)
    return {
        "set": set_name,
        "method": method,
        "machine_type": machine_type,
        "status": "failed",
        "reason": " ".join(text.split())[:300],
    }


# ----------------------------------------------------------------------------- metrics
def bootstrap_auc(
    normal: np.ndarray, anomaly: np.ndarray, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """AUC of ``n_resamples`` bootstrap resamples: normal and anomalous clips are each drawn
    with replacement (``rng.integers``, normals first), so both classes stay present.
    Exact Mann-Whitney AUC (ties count 1/2), equal to ``roc_auc_score`` on each resample."""
    normal, anomaly = np.asarray(normal, float), np.asarray(anomaly, float)
    pairs = (anomaly[:, None] > normal[None, :]) + 0.5 * (anomaly[:, None] == normal[None, :])
    counts = []
    for values in (normal, anomaly):
        draws = rng.integers(0, len(values), size=(n_resamples, len(values)))
        count = np.zeros((n_resamples, len(values)))
        np.add.at(count, (np.arange(n_resamples)[:, None], draws), 1.0)
        counts.append(count)
    total = np.einsum("bi,ij,bj->b", counts[1], pairs, counts[0])
    return total / (len(normal) * len(anomaly))


def bootstrap_mean_auc(frame: pd.DataFrame, n_resamples: int, seed: int) -> tuple[float, float]:
    """95 % percentile interval of the mean over machine types of the AUC, resampling test
    clips within each type (and class); types in sorted order, clips sorted by path, so
    methods scored on the same clips get the same resamples (a paired bootstrap)."""
    rng = np.random.default_rng(seed)
    per_type = []
    for _, part in frame.sort_values(["machine_type", "path"]).groupby("machine_type"):
        target, score = part["target"].to_numpy(), part["score"].to_numpy()
        per_type.append(bootstrap_auc(score[target == 0], score[target == 1], n_resamples, rng))
    low, high = np.percentile(np.mean(per_type, axis=0), [2.5, 97.5])
    return float(low), float(high)


def summarise(
    scores: pd.DataFrame,
    failures: list[dict],
    n_resamples: int = 1000,
    seed: int = 0,
    order: list[str] | None = None,
) -> pd.DataFrame:
    """One row per set x method x machine type (AUC, pAUC, AP by :func:`binary_metrics`), a
    ``mean`` row per set x method (mean over types, bootstrap interval of the AUC mean), and
    failed rows; a method that failed on any type of a set has a failed ``mean`` row.
    Methods in ``order`` (default: as they appear)."""
    pairs = zip(scores["set"], scores["method"], strict=True)
    keys = list(dict.fromkeys([*pairs, *((f["set"], f["method"]) for f in failures)]))
    sets = list(dict.fromkeys(s for s, _ in keys))
    rank = {m: i for i, m in enumerate(order or [])}
    keys.sort(key=lambda k: (sets.index(k[0]), rank.get(k[1], len(rank))))
    rows: list[dict] = []
    for set_name, method in keys:
        frame = scores[(scores["set"] == set_name) & (scores["method"] == method)]
        typed = []
        for machine_type, part in frame.groupby("machine_type"):
            target = part["target"].to_numpy()
            counts = {"n_normal": int((target == 0).sum()), "n_anomaly": int((target == 1).sum())}
            metrics = binary_metrics(target, part["score"].to_numpy())
            typed.append({"machine_type": machine_type, "status": "ok", **counts, **metrics})
        failed = [f for f in failures if (f["set"], f["method"]) == (set_name, method)]
        rows += [{"set": set_name, "method": method, **row} for row in typed] + failed
        if failed:  # a mean over the types that worked would mislead
            where = ", ".join(f["machine_type"] for f in failed)
            reason = failed[0]["reason"] if where == "all" else f"on {where}: {failed[0]['reason']}"
            rows.append(_failure(set_name, method, "mean", reason))
            continue
        low, high = bootstrap_mean_auc(frame, n_resamples, seed)
        mean = pd.DataFrame(typed)[["n_normal", "n_anomaly", "auc", "pauc", "ap"]]
        totals = {**mean.mean().to_dict(), **mean[["n_normal", "n_anomaly"]].sum().to_dict()}
        rows.append(
            {
                "set": set_name,
                "method": method,
                "machine_type": "mean",
                "status": "ok",
                **totals,
                "auc_low": low,
                "auc_high": high,
            }
        )
    return pd.DataFrame(rows).reindex(columns=TABLE_COLUMNS)


# ----------------------------------------------------------------------------- report
def _cell(row: pd.Series | None, metric: str, interval: bool = False) -> str:
    if row is None:
        return "-"
    if row["status"] != "ok":
        return f"failed: {row['reason']}" if row["machine_type"] == "mean" else "failed"
    if interval:
        return f"{row[metric]:.3f} [{row['auc_low']:.3f}, {row['auc_high']:.3f}]"
    return f"{row[metric]:.3f}"


def _wide(table: pd.DataFrame, columns: list[str], column_of: str, metric: str) -> pd.DataFrame:
    """Method rows x ``columns`` (values of ``column_of``) of formatted ``metric`` cells."""
    methods = list(dict.fromkeys(table["method"]))
    cells = {(r["method"], r[column_of]): r for _, r in table.iterrows()}
    wide = pd.DataFrame({"method": methods})
    for column in columns:
        interval = metric == "auc" and (column_of == "set" or column == "mean")
        wide[column] = [_cell(cells.get((m, column)), metric, interval) for m in methods]
    return wide.rename(columns={"mean": "mean [95 % CI]" if metric == "auc" else "mean"})


def report_markdown(
    table: pd.DataFrame,
    timings: pd.DataFrame,
    notes: list[str],
    protocols: dict[str, str],
    header: str,
) -> str:
    """The text of quality.md: overview, per-set AUC and pAUC tables, notes, timings."""
    sets = list(dict.fromkeys(table["set"]))
    means = table[table["machine_type"] == "mean"]
    lines = [header, "", "## Mean AUC over machine types [95 % bootstrap interval]", ""]
    lines += [to_markdown(_wide(means, sets, "set", "auc")), ""]
    for set_name in sets:
        part = table[table["set"] == set_name]
        types = sorted(t for t in part["machine_type"].unique() if t not in ("mean", "all"))
        lines += [f"## {set_name}", "", f"Protocol: {protocols.get(set_name, '')}", ""]
        for metric, title in (("auc", "AUC"), ("pauc", "pAUC (max FPR 0.1)")):
            wide = _wide(part, [*types, "mean"], "machine_type", metric)
            lines += [f"{title}:", "", to_markdown(wide), ""]
    if notes:
        lines += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    if len(timings):
        lines += ["## Time per part", "", TIMING_NOTE, "", to_markdown(timings, "{:.1f}"), ""]
    return "\n".join(lines)


def plot_quality(table: pd.DataFrame, path: Path) -> Path:
    """Grouped bars: mean AUC per method (colour) per set, bootstrap interval as error bars."""
    means = table[(table["machine_type"] == "mean") & (table["status"] == "ok")]
    sets, methods = list(dict.fromkeys(means["set"])), list(dict.fromkeys(table["method"]))
    width = 0.8 / max(len(methods), 1)
    figure, axes = plt.subplots(figsize=(max(6.0, 2.2 * len(sets) + 4), 4.5))
    colours = plt.get_cmap("tab20")
    for index, method in enumerate(methods):
        rows = means[means["method"] == method].set_index("set").reindex(sets)
        x = np.arange(len(sets)) + (index - (len(methods) - 1) / 2) * width
        error = np.vstack([rows["auc"] - rows["auc_low"], rows["auc_high"] - rows["auc"]])
        axes.bar(
            x,
            rows["auc"],
            width,
            yerr=error,
            capsize=2,
            label=method,
            color=colours(index % 20),
            hatch="//" if method in PEERS else None,
        )
    axes.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    axes.set(
        xticks=np.arange(len(sets)),
        xticklabels=sets,
        ylim=(0, 1.05),
        ylabel="mean AUC over machine types",
        title="aad vs PyOD peers (95 % bootstrap)",
    )
    axes.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_figure(figure, path)


# ----------------------------------------------------------------------------- entry
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, help="default: all")
    parser.add_argument("--methods", nargs="+", help="aad methods (compare.yaml) and/or peers")
    parser.add_argument("--skip-peers", action="store_true", help="aad methods only")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "results" / "quality")
    parser.add_argument("--quick", action="store_true", help=QUICK_HELP)
    parser.add_argument("--bootstrap", type=int, help="resamples (default 1000; quick 200)")
    parser.add_argument("--seed", type=int, default=0, help="peer and bootstrap seed")
    parser.add_argument("--data-root", type=Path, default=SHARED_DATA)
    args = parser.parse_args(argv)
    args.sets = args.sets or [s for s in SETS if not (args.quick and s == "slider")]
    args.bootstrap = args.bootstrap or (200 if args.quick else 1000)
    return args


def _clock() -> tuple[float, float]:
    """(wall, CPU) seconds so far; CPU counts this process and finished children (compare)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return time.perf_counter(), cpu


def _elapsed(tick: tuple[float, float]) -> dict[str, float]:
    now = _clock()
    return {"seconds": now[0] - tick[0], "cpu_seconds": now[1] - tick[1]}


def aad_part(
    eval_set: EvalSet, aad_methods: list[str], args: argparse.Namespace
) -> tuple[list[pd.DataFrame], list[dict]]:
    """Every selected aad method on one set (one compare run: a subprocess, one torch thread):
    score frames and failure rows."""
    subset = None if aad_methods == [s["name"] for s in aad_method_specs()] else aad_methods
    out = args.out / "aad" / eval_set.name
    try:
        aad = aad_clip_scores(eval_set.name, eval_set.overrides, out, methods=subset)
    except Exception as err:  # compare broke: every aad method fails on this set
        return [], [_failure(eval_set.name, m, "all", err) for m in aad_methods]
    return aad_rows(aad, aad_methods, eval_set)


def peer_part(eval_set: EvalSet, peer: str, seed: int) -> tuple[list[pd.DataFrame], list[dict]]:
    """One peer on every group of a set (in this process, one torch thread)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_peer(peer, eval_set, seed)


def run_parts(
    eval_sets: list[EvalSet], aad_methods: list[str], peers: list[str], args: argparse.Namespace
) -> tuple[list[pd.DataFrame], list[dict], list[dict]]:
    """Every part (aad's compare per set, each peer per set) on two slots, one core each:
    one slot runs aad's compare runs, the other the peers (one at a time: they share this
    process) and then takes over aad runs still waiting. Largest sets first. Returns score
    frames, failure rows and the wall clock of each part (parts overlap)."""
    order = sorted(eval_sets, key=lambda s: -sum(len(g.train) + len(g.test) for g in s.groups))
    waiting = deque(order if aad_methods else [])
    lock = threading.Lock()
    results: list[tuple[str, str, list, list, float]] = []

    def record(set_name: str, part: str, outcome: tuple[list, list], tick: float) -> None:
        seconds = time.perf_counter() - tick
        with lock:
            results.append((set_name, part, *outcome, seconds))
        print(f"[quality] {set_name}: {part} done in {seconds:.0f} s", flush=True)

    def aad_slot() -> None:
        while True:
            with lock:
                if not waiting:
                    return
                eval_set = waiting.popleft()
            tick = time.perf_counter()
            record(eval_set.name, "aad compare", aad_part(eval_set, aad_methods, args), tick)

    def peer_slot() -> None:
        for eval_set in order:
            for peer in peers:
                tick = time.perf_counter()
                record(eval_set.name, peer, peer_part(eval_set, peer, args.seed), tick)
        aad_slot()

    with ThreadPoolExecutor(max_workers=2) as pool:
        for future in [pool.submit(aad_slot), pool.submit(peer_slot)]:
            future.result()
    rank = {s.name: i for i, s in enumerate(eval_sets)}
    parts = ["aad compare", *peers]
    results.sort(key=lambda r: (rank[r[0]], parts.index(r[1])))
    frames = [f for r in results for f in r[2]]
    failures = [f for r in results for f in r[3]]
    timings = [{"set": r[0], "part": r[1], "seconds": r[4]} for r in results]
    return frames, failures, timings


def main(argv: list[str] | None = None) -> pd.DataFrame:
    """Run every selected method on every selected set; write the report; return the table."""
    args = parse_args(argv)
    aad_all, notes = [s["name"] for s in aad_method_specs()], []
    chosen = args.methods or [*aad_all, *PEERS]
    unknown = sorted(set(chosen) - set(aad_all) - set(PEERS))
    if unknown:
        raise SystemExit(f"unknown methods {unknown}; aad: {aad_all}; peers: {list(PEERS)}")
    aad_methods = [m for m in aad_all if m in chosen]
    peers = [] if args.skip_peers else [p for p in PEERS if p in chosen]
    if peers and (reason := missing_peer_packages()):
        notes.append(reason)
        peers = []
    protocols: dict[str, str] = {}
    if peers:
        import torch

        torch.set_num_threads(1)  # one core for the peers, one for compare
    started = _clock()
    eval_sets = []
    for set_name in args.sets:
        try:
            eval_set = build_set(set_name, args.data_root, args.quick)
        except SetUnavailableError as err:
            notes.append(f"set {set_name} skipped: {err}")
            print(f"[quality] {set_name}: skipped ({err})", flush=True)
            continue
        protocols[set_name] = eval_set.protocol
        counts = ", ".join(
            f"{g.machine_type} {len(g.train)}/{len(g.test)}" for g in eval_set.groups
        )
        print(f"[quality] {set_name}: train/test clips per type: {counts}", flush=True)
        eval_sets.append(eval_set)
    frames, failures, timings = run_parts(eval_sets, aad_methods, peers, args)
    if not frames and not failures:
        raise SystemExit("nothing was scored: " + "; ".join(notes))
    scores = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=CLIP_COLUMNS)
    table = summarise(scores, failures, args.bootstrap, args.seed, [*aad_all, *PEERS])
    timings.append({"set": "all", "part": "total", **_elapsed(started)})
    args.out.mkdir(parents=True, exist_ok=True)
    scores.to_csv(args.out / "scores.csv", index=False, float_format="%.8g")
    table.to_csv(args.out / "quality.csv", index=False, float_format="%.6f")
    command = " ".join(argv if argv is not None else sys.argv[1:])
    header = HEADER.format(
        command=command,
        date=time.strftime("%Y-%m-%d %H:%M"),
        cores=os.cpu_count(),
        load=", ".join(f"{x:.1f}" for x in os.getloadavg()),
        seed=args.seed,
        n=args.bootstrap,
    )
    text = report_markdown(table, pd.DataFrame(timings), notes, protocols, header)
    (args.out / "quality.md").write_text(text)
    if (table["machine_type"] == "mean").any():
        plot_quality(table, args.out / "quality.png")
    print(text)
    print(f"[quality] wrote {args.out}/quality.md, quality.csv, scores.csv, quality.png")
    return table


if __name__ == "__main__":
    main()
