"""``evaluate.py``: score a dataset's test clips with trained checkpoints alone.

    evaluate.py --ckpt CKPT_OR_RUN_FOLDER [--data.root DIR --data.KEY VALUE ...] [--out DIR]
    evaluate.py --ckpt CKPT --explain clip.wav            # log-mel + frame scores over time
    evaluate.py predict --ckpt CKPT FILES_OR_FOLDERS...   # see aad.cli.predict
    evaluate.py --compare configs/compare.yaml [...]      # = python -m aad.compare

The data config comes from the checkpoint (``--data.*`` overrides it, jsonargparse-checked);
scores come from the same engine as ``train.py`` and ``compare`` (:mod:`aad.engine`).
Writes ``scores.csv``, ``metrics.{csv,json,md}``, ROC/PR/histogram PNGs and the DCASE
submission files (:mod:`aad.report.submission`).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jsonargparse import ArgumentParser

from aad.checkpoints import data_config, load_module, resolve_checkpoints, run_label
from aad.data.datamodule import MachineSoundDataModule
from aad.engine.fit import quiet_lightning
from aad.engine.methods import ModelMethod
from aad.engine.runner import RunResult, run_groups, say
from aad.metrics import to_markdown
from aad.report.plots import plot_roc_pr, plot_score_histograms
from aad.report.submission import write_submission
from aad.report.tables import check_writable, write_results


def evaluate_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="evaluate.py",
        description="Score clips with trained checkpoints: metrics, tables, plots, explanations."
        " Subcommands (each has --help): 'predict' (loose files), 'export' (ONNX/TorchScript),"
        " 'watch' (a live stream); --compare CONFIG runs python -m aad.compare.",
    )
    parser.add_argument(
        "--ckpt",
        type=str | list[str],
        required=True,
        help="checkpoint, run folder or glob (a list '[a, b]' for several)",
    )
    parser.add_argument("--out", type=str | None, default=None, help="output folder")
    parser.add_argument(
        "--explain",
        type=str | list[str] | None,
        default=None,
        help="clip(s) to explain instead of evaluating the test split",
    )
    parser.add_argument("--device", type=str, default="auto", help="auto, cpu or cuda")
    parser.add_argument("--plots", type=bool, default=True, help="write the PNG figures")
    parser.add_argument("--torch_threads", type=int | None, default=None)
    parser.add_class_arguments(MachineSoundDataModule, "data", help="overrides of the ckpt's data")
    return parser


def data_overrides(parser: ArgumentParser, argv: list[str]) -> dict[str, Any]:
    """Only the ``--data.*`` values given on the command line (checked against the signature)."""
    given = parser.parse_args(argv, defaults=False)
    data = given.get("data")
    return dict(data.as_dict()) if data is not None else {}


def _as_list(value: str | list[str] | None) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    """Dispatch: ``predict``, ``--compare``, ``--explain``, else evaluate the test split."""
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_lightning()
    if argv[:1] == ["predict"]:
        from aad.cli.predict import main as predict_main

        return predict_main(argv[1:])
    if argv[:1] == ["export"]:
        from aad.cli.export import main as export_main

        export_main(argv[1:])
        return None
    if argv[:1] == ["watch"]:
        from aad.cli.watch import main as watch_main

        return watch_main(argv[1:])
    for i, item in enumerate(argv):
        if item == "--compare" or item.startswith("--compare="):
            from aad.cli.compare import main as compare_main

            config = item.split("=", 1)[1] if "=" in item else argv[i + 1]
            rest = argv[:i] + argv[i + (1 if "=" in item else 2) :]
            return compare_main(["--config", config, *rest])
    parser = evaluate_parser()
    args = parser.parse_args(argv)
    overrides = data_overrides(parser, argv)
    if args.torch_threads:
        torch.set_num_threads(int(args.torch_threads))
    paths = resolve_checkpoints(_as_list(args.ckpt))
    if args.explain:
        from aad.cli.explain import explain_clips

        out = Path(args.out or "results/explain")
        check_writable(out)
        return explain_clips(paths[0], _as_list(args.explain), out, overrides, args.device)
    out = Path(args.out) if args.out else default_out(paths)
    check_writable(out)
    return evaluate_checkpoints(paths, overrides, out, device=args.device, plots=args.plots)


def default_out(paths: list[Path]) -> Path:
    if len(paths) == 1 and paths[0].parent.name == "checkpoints":
        return paths[0].parent.parent / "evaluation"
    return Path("results") / "evaluation"


def evaluate_checkpoint(
    path: Path, overrides: dict[str, Any], device: str = "auto", label: str | None = None
) -> RunResult:
    """Score the test clips of a checkpoint's data (``overrides`` applied) -> a run result."""
    module, checkpoint = load_module(path)
    label = label or run_label(path)
    if not math.isfinite(float(module.threshold)):
        say(
            f"note: {path} holds no decision threshold (training stopped before validation); "
            "decisions are n/a, scores and AUC/pAUC/AP are unaffected"
        )
    hparams = data_config(checkpoint, overrides)
    if "sample_rate" in overrides and overrides["sample_rate"] != module.sample_rate:
        say(
            f"note: --data.sample_rate {overrides['sample_rate']} ignored: clips are loaded at "
            f"the model's {module.sample_rate} Hz"
        )
    saved = data_config(checkpoint, {})
    if "root" not in hparams:
        raise ValueError(f"{path} holds no data config: give --data.root")
    data = MachineSoundDataModule(**{**hparams, "sample_rate": module.sample_rate})
    groups = data.groups()
    for group in groups:
        if saved.get("machine_type") not in (None, group.machine_type):
            say(
                f"note: {label} was trained on machine type {saved['machine_type']!r} and "
                f"scores {group.machine_type!r} clips here"
            )
    method = ModelMethod(label, module, device=device)
    return run_groups(groups, data, lambda group: [method])


def evaluate_checkpoints(
    paths: list[Path],
    overrides: dict[str, Any],
    out: Path,
    *,
    device: str = "auto",
    plots: bool = True,
) -> pd.DataFrame:
    """Evaluate several checkpoints into one table (one block per checkpoint label)."""
    results = [evaluate_checkpoint(path, overrides, device) for path in paths]
    scored = [r.clip_scores for r in results if len(r.clip_scores)]
    scores = pd.concat(scored, ignore_index=True) if scored else results[0].clip_scores
    failures = pd.concat([r.failures for r in results], ignore_index=True)
    types = [set(r.clip_scores["machine_type"]) for r in results]
    overlap = sum(len(t) for t in types) != len(set().union(*types))
    group_column = "method" if overlap else None  # else one table, an ALL row across types
    labels = {run_label(p): str(p) for p in paths}
    table = write_results(
        scores, out, group_column=group_column, failures=failures, extra={"checkpoints": labels}
    )
    thresholds = {}
    for result in results:
        for (name, group), method in result.methods.items():
            thresholds[group.split("/")[0]] = method.threshold
            subfolder = out / "submission" / (name.replace("/", "_") if len(paths) > 1 else "")
            write_submission(scores[scores["method"] == name], subfolder)
    if plots and len(scores):
        plot_roc_pr(scores, out)
        plot_score_histograms(scores, out, thresholds)
    say(f"\nEvaluation of {len(paths)} checkpoint(s), written to {out}:\n")
    say(to_markdown(table))
    unscored = int((scores["status"] != "ok").sum()) if len(scores) else 0
    if unscored:
        say(f"[aad] {unscored} test clip(s) have no score (status column of scores.csv)")
    table.attrs["failures"] = len(failures) + unscored
    return table
