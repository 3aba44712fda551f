"""``train.py`` on LightningCLI: defaults, bf16 on GPU, one fit per machine type, tests, tables."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch.cli import LightningCLI

from aad.data.datamodule import MachineSoundDataModule, clip_length
from aad.embeddings import resolve_device
from aad.metrics import to_markdown
from aad.models.base import AnomalyModule
from aad.report.plots import plot_roc_pr, plot_score_histograms
from aad.report.tables import grouped_metrics, write_results
from aad.training import auto_precision, finalize_checkpoints

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
ALL_TYPES = ("all", "", None)


class AADCLI(LightningCLI):
    """LightningCLI with aad defaults: precision ``bf16-mixed`` on a GPU when unset, and an
    optional per-machine-type TensorBoard folder (``lightning_logs/<type>/version_N``)."""

    def __init__(self, *args: Any, run_name: str | None = None, **kwargs: Any) -> None:
        self.run_name = run_name
        kwargs.setdefault("model_class", AnomalyModule)
        kwargs.setdefault("subclass_mode_model", True)
        kwargs.setdefault("datamodule_class", MachineSoundDataModule)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--evaluate",
            type=bool,
            default=True,
            help="after fit: fit the threshold, test the best checkpoint, write results",
        )
        parser.add_argument(
            "--torch_threads",
            type=int | None,
            default=None,
            help="torch.set_num_threads (null = torch default; 1 helps on busy small CPUs)",
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("torch_threads"):
            torch.set_num_threads(int(config.torch_threads))
        trainer = config.trainer
        if trainer.get("precision") is None:
            trainer.precision = auto_precision(trainer.get("accelerator", "auto"))


class _ParseOnlyCLI(AADCLI):
    """Parses (and validates) the arguments without building or running anything."""

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        pass

    def instantiate_classes(self) -> None:
        pass

    def after_instantiate_classes(self) -> None:
        pass

    def _run_subcommand(self, subcommand: str) -> None:
        pass


def _with_default_config(argv: list[str]) -> list[str]:
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["fit", *argv]  # `python train.py [--key value ...]` means fit
    if argv[0] == "fit" and not any(a == "--config" or a.startswith("--config=") for a in argv):
        argv = ["fit", "--config", str(DEFAULT_CONFIG), *argv[1:]]
    return argv


def _method_comparison(argv: list[str]) -> tuple[str, list[str]] | None:
    """``fit --config X.yaml ...`` where X is a comparison config (top-level ``methods``, as
    ``configs/experiment/exploring_aad.yaml``) -> (X, the other arguments) for aad.compare."""
    import yaml

    if argv[0] != "fit":
        return None
    for i, item in enumerate(argv):
        if item == "--config" and i + 1 < len(argv):
            path, rest = argv[i + 1], argv[1:i] + argv[i + 2 :]
        elif item.startswith("--config="):
            path, rest = item.split("=", 1)[1], argv[1:i] + argv[i + 1 :]
        else:
            continue
        if Path(path).is_file():
            loaded = yaml.safe_load(Path(path).read_text())
            if isinstance(loaded, dict) and "methods" in loaded:
                return path, rest
    return None


def machine_types_to_train(config: Any) -> list[str | None]:
    """``[data.machine_type]``, or every type under ``data.root`` for ``all``/null."""
    data = config.data.init_args if "init_args" in config.data else config.data
    wanted = data.get("machine_type")
    if wanted not in ALL_TYPES:
        return [wanted]
    from aad.data.datamodule import MachineSoundDataModule, list_machine_types

    if not Path(data.root).exists():  # let the datamodule generate the synthetic set first
        MachineSoundDataModule(**{**dict(data), "machine_type": None}).prepare_data()
    types = list(list_machine_types(data.root, data.get("layout", "auto")))
    if not types:
        raise ValueError(f"no machine types found under data.root={data.root}")
    return types


def main(argv: list[str] | None = None) -> pd.DataFrame | None:
    """``train.py``: fit (default: ``fit --config configs/default.yaml``), then for each machine
    type fit the threshold, test the best checkpoint and print one combined table."""
    argv = _with_default_config(list(sys.argv[1:] if argv is None else argv))
    warnings.filterwarnings("ignore", ".*args parameter is intended to run from within Python.*")
    warnings.filterwarnings("ignore", r".*isinstance\(treespec, LeafSpec\).*")  # Lightning 2.6
    warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")  # by design
    if argv[0] != "fit":
        AADCLI(args=argv)
        return None
    comparison = _method_comparison(argv)
    if comparison is not None:  # a config listing several methods: run them all, one table
        from aad.compare import main as compare_main

        return compare_main(*comparison)
    parsed = _ParseOnlyCLI(args=argv).config["fit"]
    types = machine_types_to_train(parsed)
    data = parsed.data.get("init_args", parsed.data)
    loop = len(types) > 1 or data.get("machine_type") in ALL_TYPES
    if loop and parsed.get("ckpt_path"):
        raise ValueError(
            "--ckpt_path resumes one model: give its machine type too (--data.machine_type TYPE)"
        )
    root_dir = Path(parsed.trainer.get("default_root_dir") or ".")
    tables, run_dirs = [], {}
    for machine_type in types:
        extra = ["--data.machine_type", str(machine_type)] if machine_type else []
        if loop and parsed.trainer.get("logger") in (None, True):
            logger = {
                "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
                "init_args": {"save_dir": str(root_dir), "name": f"lightning_logs/{machine_type}"},
            }
            extra += [f"--trainer.logger={json.dumps(logger)}"]
        try:
            cli = AADCLI(args=[*argv, *extra], run_name=machine_type)
            result = after_fit(cli)
        except torch.cuda.OutOfMemoryError as error:
            batch_size = data.get("batch_size")
            raise RuntimeError(
                f"CUDA out of memory while training {machine_type} with data.batch_size="
                f"{batch_size}; lower it, e.g. --data.batch_size {max(1, (batch_size or 2) // 2)}"
            ) from error
        clip_scores, log_dir = result
        if clip_scores is not None:
            tables.append(clip_scores)
            run_dirs[str(machine_type)] = log_dir
    if not tables or not cli.trainer.is_global_zero:  # other DDP ranks print nothing
        return None
    clip_scores = pd.concat(tables, ignore_index=True)
    if loop:
        out_dir = root_dir / "lightning_logs" / "summary"
        table = write_results(clip_scores, out_dir, extra={"runs": run_dirs})
    else:
        out_dir = Path(log_dir or ".") / "test"
        table = grouped_metrics(clip_scores)
    print(f"\nTest results ({len(types)} machine type(s)), written to {out_dir}:\n")
    print(to_markdown(table))
    return table


def after_fit(cli: AADCLI) -> tuple[pd.DataFrame | None, str | None]:
    """Threshold into the checkpoints, test the best one, write ``<log_dir>/test/``.

    Returns the per-clip test scores (None when not evaluated) and the run folder.
    """
    trainer, module, datamodule = cli.trainer, cli.model, cli.datamodule
    log_dir = trainer.log_dir  # a collective under DDP: every rank asks
    if trainer.interrupted:
        return None, log_dir
    best = finalize_checkpoints(trainer, module, datamodule)
    if not cli.config["fit"].get("evaluate", True):
        return None, log_dir
    trainer.test(
        module, datamodule=datamodule, ckpt_path=str(best) if best else None, verbose=False
    )
    clip_scores = module.test_results
    if clip_scores is None or not trainer.is_global_zero:
        return clip_scores, log_dir
    out_dir = Path(log_dir or ".") / "test"
    threshold = float(module.threshold)
    write_results(clip_scores, out_dir, extra={"checkpoint": str(best), "threshold": threshold})
    plot_roc_pr(clip_scores, out_dir)
    plot_score_histograms(clip_scores, out_dir, threshold)
    return clip_scores, log_dir


# --------------------------------------------------------------------------- evaluate.py
EVALUATE_USAGE = """\
evaluate.py --ckpt PATH [--ckpt PATH ...] [--data.root DIR] [--data.KEY VALUE ...] [--out DIR]
            [--explain CLIP.wav ...] [--device auto|cpu|cuda]
evaluate.py predict --ckpt PATH FILES_OR_FOLDERS... [--out DIR]
evaluate.py --compare configs/compare.yaml [overrides ...]
"""


def _parse_evaluate_args(argv: list[str]) -> tuple[Any, dict[str, Any]]:
    import argparse

    import yaml

    parser = argparse.ArgumentParser(
        prog="evaluate.py",
        usage=EVALUATE_USAGE,
        description="Score clips with trained checkpoints: metrics, tables, plots, explanations.",
    )
    parser.add_argument("inputs", nargs="*", help="'predict' then files or folders to score")
    parser.add_argument(
        "--ckpt",
        action="append",
        default=[],
        help="checkpoint file, run folder or glob (repeatable); a folder means its best ckpt",
    )
    parser.add_argument("--out", help="output folder (default: beside the checkpoint)")
    parser.add_argument("--explain", action="append", default=[], help="per-frame error curve")
    parser.add_argument("--predict", action="store_true", help="same as the 'predict' command")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    parser.add_argument("--compare", help="run aad.compare.main(CONFIG, remaining overrides)")
    overrides: dict[str, Any] = {}
    rest: list[str] = []
    i = 0
    while i < len(argv):  # --data.KEY VALUE / --data.KEY=VALUE: datamodule overrides
        item = argv[i]
        if item.startswith("--data."):
            key, has_value, value = item[len("--data.") :].partition("=")
            if not has_value:
                if i + 1 >= len(argv):
                    parser.error(f"{item} needs a value")
                value = argv[i + 1]
                i += 1
            overrides[key] = yaml.safe_load(value)
        else:
            rest.append(item)
        i += 1
    args, unknown = parser.parse_known_args(rest)
    for item in unknown:
        if not item.startswith("-"):
            args.inputs.append(item)  # files after options: `predict --ckpt C a.wav b.wav`
        else:
            parser.error(f"unrecognised argument {item}")
    if args.inputs and args.inputs[0] == "predict":
        args.predict = True
        args.inputs = args.inputs[1:]
    if not args.ckpt:
        parser.error("--ckpt is required (or --compare CONFIG)")
    if args.predict and not args.inputs:
        parser.error("predict needs files or folders to score")
    if args.inputs and not args.predict:
        parser.error(f"unexpected arguments {args.inputs} (did you mean 'predict'?)")
    return args, overrides


def _compare_arguments(argv: list[str]) -> tuple[str, list[str]] | None:
    """``--compare CONFIG [overrides...]`` -> (CONFIG, overrides), passed through untouched."""
    for i, item in enumerate(argv):
        if item == "--compare" and i + 1 < len(argv):
            return argv[i + 1], argv[:i] + argv[i + 2 :]
        if item.startswith("--compare="):
            return item.split("=", 1)[1], argv[:i] + argv[i + 1 :]
    return None


def resolve_checkpoints(specs: list[str]) -> list[Path]:
    """Checkpoint files from files, globs and run folders (a folder: the best, else last)."""
    import glob

    found: list[Path] = []
    for spec in specs:
        matches = [Path(p) for p in sorted(glob.glob(spec, recursive=True))] or [Path(spec)]
        for match in matches:
            if match.is_dir():
                folders = sorted({p.parent for p in match.rglob("*.ckpt")})
                if not folders:
                    raise FileNotFoundError(f"no .ckpt files under {match}")
                for folder in folders:
                    ckpts = sorted(folder.glob("*.ckpt"))
                    best = [p for p in ckpts if not p.name.startswith("last")]
                    found.append(_recorded_best(folder) or (best or ckpts)[-1])
            else:
                found.append(match)
    return list(dict.fromkeys(found))


def _recorded_best(folder: Path) -> Path | None:
    """The best checkpoint that Lightning's ModelCheckpoint recorded in ``last.ckpt``
    (``best_model_path``), when it is in ``folder``; else None (e.g. no ``save_last``)."""
    last = folder / "last.ckpt"
    if not last.is_file():
        return None
    try:
        callbacks = torch.load(last, map_location="cpu", weights_only=False).get("callbacks", {})
    except Exception:  # an unreadable last.ckpt: fall back to the file names
        return None
    for key, state in callbacks.items():
        if str(key).startswith("ModelCheckpoint") and state.get("best_model_path"):
            candidate = folder / Path(state["best_model_path"]).name
            if candidate.is_file():
                return candidate
    return None


def _run_label(path: Path) -> str:
    """``fan/version_0/best-epoch=3`` style label of a checkpoint."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "checkpoints":
        return "/".join([*parts[-5:-2], path.stem]).replace("lightning_logs/", "")
    return path.stem


def datamodule_hparams(
    checkpoint: dict[str, Any], overrides: dict[str, Any], *, require_root: bool = True
) -> dict[str, Any]:
    """The training data config from the checkpoint, with ``overrides`` applied."""
    saved = checkpoint.get("datamodule_hyper_parameters") or checkpoint.get("aad", {}).get(
        "datamodule_hparams"
    )
    hparams = {k: v for k, v in (saved or {}).items() if not k.startswith("_")}
    hparams.update(overrides)
    if not require_root:
        return hparams
    if "root" not in hparams:
        raise ValueError("the checkpoint holds no data config: give --data.root")
    return hparams


def _note_sample_rate(records: list[Any], sample_rate: int) -> None:
    import soundfile as sf

    for record in records[:1]:
        try:
            file_rate = sf.info(record.path).samplerate
        except RuntimeError:
            return
        if file_rate != sample_rate:
            print(
                f"note: clips are {file_rate} Hz (e.g. {record.path}); the model was trained at "
                f"{sample_rate} Hz, so they are resampled to {sample_rate} Hz when loaded"
            )


def evaluate_checkpoint(
    path: Path,
    overrides: dict[str, Any],
    device: torch.device,
) -> tuple[AnomalyModule, pd.DataFrame]:
    """Score the test split of a checkpoint's data (or ``overrides``) -> per-clip table."""
    from aad.data.datamodule import MachineSoundDataModule
    from aad.models.base import load_module
    from aad.scoring import score_dataloader, scores_frame

    module, checkpoint = load_module(path)
    module.to(device)
    if not torch.isfinite(module.threshold):
        print(
            f"note: {path} holds no decision threshold (training stopped before it was fitted);"
            " decisions are all 0, scores and AUC/pAUC/AP are unaffected"
        )
    hparams = datamodule_hparams(checkpoint, overrides)
    if hparams.get("sample_rate") not in (None, module.sample_rate) and "sample_rate" in overrides:
        print(
            f"note: --data.sample_rate {overrides['sample_rate']} ignored: clips are loaded at "
            f"the model's {module.sample_rate} Hz"
        )
    hparams["sample_rate"] = module.sample_rate
    datamodule = MachineSoundDataModule(**hparams)
    datamodule.prepare_data()
    datamodule.setup("test")
    records = datamodule.records("test")
    _note_sample_rate(records, module.sample_rate)
    scored = score_dataloader(module, datamodule.test_dataloader())
    clip_scores = scores_frame(records, scored["index"], scored["score"], float(module.threshold))
    return module, clip_scores


def evaluate_main(argv: list[str] | None = None) -> pd.DataFrame | None:
    """``evaluate.py``: metrics and figures from checkpoints, ``predict``, ``--explain``,
    ``--compare``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    compare = _compare_arguments(argv)
    if compare is not None:
        from aad.compare import main as compare_main

        return compare_main(*compare)
    args, overrides = _parse_evaluate_args(argv)
    device = resolve_device(args.device)
    paths = resolve_checkpoints(args.ckpt)
    try:
        if args.predict:
            return predict_files(paths[0], args.inputs, device, args.out, overrides)
        out_dir = Path(args.out) if args.out else _default_out(paths)
        if args.explain:
            return explain_clips(paths[0], args.explain, device, out_dir, overrides)
        return evaluate_checkpoints(paths, overrides, device, out_dir, plots=not args.no_plots)
    except torch.cuda.OutOfMemoryError as error:
        batch_size = overrides.get("batch_size", "the checkpoint's data.batch_size")
        raise RuntimeError(
            f"CUDA out of memory while scoring with batch size {batch_size}; lower it with "
            "--data.batch_size N (or use --device cpu)"
        ) from error


def _default_out(paths: list[Path]) -> Path:
    if len(paths) == 1 and paths[0].parent.name == "checkpoints":
        return paths[0].parent.parent / "evaluation"
    return Path("results") / "evaluation"


def evaluate_checkpoints(
    paths: list[Path],
    overrides: dict[str, Any],
    device: torch.device,
    out_dir: Path,
    *,
    plots: bool = True,
) -> pd.DataFrame:
    """Evaluate several checkpoints into one table (one model column when types overlap)."""
    frames, thresholds, labels = [], {}, {}
    for path in paths:
        module, clip_scores = evaluate_checkpoint(path, overrides, device)
        label = _run_label(path)
        clip_scores.insert(0, "model", label)
        frames.append(clip_scores)
        labels[label] = str(path)
        for machine_type in clip_scores["machine_type"].unique():
            thresholds[machine_type] = float(module.threshold)
    clip_scores = pd.concat(frames, ignore_index=True)
    types_per_model = [set(f["machine_type"]) for f in frames]
    overlapping = sum(len(t) for t in types_per_model) != len(set().union(*types_per_model))
    group = "model" if overlapping else None
    table = write_results(clip_scores, out_dir, extra={"checkpoints": labels}, group_column=group)
    if plots:
        plot_roc_pr(clip_scores, out_dir)
        plot_score_histograms(clip_scores, out_dir, thresholds)
    print(f"\nEvaluation of {len(paths)} checkpoint(s), written to {out_dir}:\n")
    print(to_markdown(table))
    return table


def _wav_files(inputs: list[str]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.suffix.lower() == ".wav")
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    if not files:
        raise FileNotFoundError(f"no .wav files in {inputs}")
    return files


def clip_loading(
    checkpoint: dict[str, Any], sample_rate: int, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """``load_waveform`` arguments for loose clips, as the training data loaded them: the
    checkpoint's ``channel`` and ``clip_seconds`` (``--data.*`` overrides win), so predict and
    explain score a clip exactly as ``evaluate.py`` and ``test_step`` do."""
    data = datamodule_hparams(checkpoint, overrides or {}, require_root=False)
    return {
        "sample_rate": sample_rate,
        "channel": data.get("channel", 0),
        "num_samples": clip_length(data.get("clip_seconds"), sample_rate, []),
    }


def predict_files(
    path: Path,
    inputs: list[str],
    device: torch.device,
    out: str | None,
    overrides: dict[str, Any],
) -> pd.DataFrame:
    """Score unlabelled WAV files with one checkpoint; print score and decision per clip."""
    from aad.data.audio import load_waveform
    from aad.models.base import load_module
    from aad.scoring import score_batch
    from aad.thresholds import decide

    module, checkpoint = load_module(path)
    module.to(device)
    files = _wav_files(inputs)
    loading = clip_loading(checkpoint, module.sample_rate, overrides)
    rows = []
    for file in files:
        waveform = load_waveform(file, **loading)
        output = score_batch(module, {"waveform": waveform[None].to(device)})
        rows.append({"path": str(file), "score": float(output.clip_scores[0])})
    table = pd.DataFrame(rows)
    threshold = float(module.threshold)
    table["decision"] = decide(table["score"].to_numpy(), threshold)
    print(f"threshold {threshold:.6g} ({path})")
    for row in table.itertuples():
        verdict = "anomaly" if row.decision else "normal"
        print(f"{row.score:12.6f}  {verdict:8s}  {row.path}")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        table.to_csv(Path(out) / "predictions.csv", index=False)
    return table


def explain_clips(
    path: Path,
    clips: list[str],
    device: torch.device,
    out_dir: Path,
    overrides: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """Per-frame reconstruction error of single clips: ``explain_<stem>.png`` and ``.csv``.

    Clips are loaded as for scoring (:func:`clip_loading`), so the printed score and
    decision are those ``evaluate.py`` and ``predict`` give the same clip."""
    from aad.data.audio import load_waveform
    from aad.models.base import load_module
    from aad.report.plots import plot_frame_errors
    from aad.scoring import score_batch

    module, checkpoint = load_module(path)
    module.to(device)
    loading = clip_loading(checkpoint, module.sample_rate, overrides)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = []
    for clip in clips:
        waveform = load_waveform(clip, **loading)
        output = score_batch(module, {"waveform": waveform[None].to(device)})
        errors = output.frame_errors[0].cpu().numpy()
        times = frame_times_s(module, len(errors))
        stem = Path(clip).stem
        pd.DataFrame({"time_s": times, "error": errors}).to_csv(
            out_dir / f"explain_{stem}.csv", index=False
        )
        score = float(output.clip_scores[0])
        decision = int(score > float(module.threshold))
        plot_frame_errors(
            times,
            errors,
            out_dir / f"explain_{stem}.png",
            title=f"{stem}: score {score:.3g} ({'anomaly' if decision else 'normal'})",
            clip_score=score,
        )
        print(f"{clip}: score {score:.6f}, decision {decision}; wrote {out_dir}/explain_{stem}.*")
        summary.append({"path": clip, "score": score, "decision": decision})
    return pd.DataFrame(summary)


def frame_times_s(module: AnomalyModule, num_frames: int) -> Any:
    """Centre time (s) of each scored frame (stacked frames: centre of the stack)."""
    import numpy as np

    extractor = module.features
    first = extractor.config.features[0]
    k = extractor.config.stack_frames
    centres = extractor.frame_times(first, num_frames + k - 1) / module.sample_rate
    if k == 1:
        return centres
    return np.convolve(centres, np.ones(k) / k, mode="valid")
