"""``train.py``: LightningCLI parses and checks the config, the engine fits one model per group.

    python train.py                                  # configs/default.yaml
    python train.py --trainer.max_epochs 5 --data.root DIR
    python train.py --model configs/model/dcase_ae.yaml

Every group (a machine type, ids pooled; or a type and id with ``data.per_id``) gets a fresh
model and trainer from the same config, TensorBoard logs and checkpoints in
``lightning_logs/[<group>/]version_N`` with the resolved ``config.yaml``; its test clips are
scored by the best checkpoint into ``version_N/test/``. Runs of several groups end with one
table in ``lightning_logs/summary/version_N/``. A group that fails is a row, not the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import torch
from lightning.pytorch import seed_everything
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only

from aad.data.datamodule import MachineSoundDataModule
from aad.data.splits import Group
from aad.engine.fit import make_trainer, quiet_lightning
from aad.engine.methods import ModelMethod
from aad.engine.runner import RunResult, run_groups, say
from aad.metrics import to_markdown
from aad.models.base import AnomalyModule
from aad.report.plots import plot_roc_pr, plot_score_histograms
from aad.report.tables import check_writable, grouped_metrics, write_results

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"


class AADCLI(LightningCLI):
    """LightningCLI (``run=False``) over ``configs/default.yaml``, with aad's run options."""

    def __init__(self, args: list[str] | None = None) -> None:
        super().__init__(
            AnomalyModule,
            MachineSoundDataModule,
            subclass_mode_model=True,
            run=False,
            save_config_callback=None,  # each group's trainer saves it (next_version_dir)
            parser_kwargs={"default_config_files": [str(DEFAULT_CONFIG)]},
            args=args,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument(
            "--evaluate",
            type=bool,
            default=True,
            help="after fitting, score the test clips and write the tables",
        )
        parser.add_argument(
            "--torch_threads",
            type=int | None,
            default=None,
            help="torch.set_num_threads (null = torch's default)",
        )
        parser.add_argument(
            "--ckpt_path",
            type=str | None,
            default=None,
            help="resume one group's training from this checkpoint",
        )
        parser.link_arguments(
            "model", "data.sample_rate", compute_fn=_sample_rate, apply_on="instantiate"
        )

    def before_instantiate_classes(self) -> None:
        if self.config.get("torch_threads"):
            torch.set_num_threads(int(self.config.torch_threads))


def _sample_rate(model: AnomalyModule) -> int:
    return model.sample_rate


def next_version_dir(parent: Path) -> Path:
    """``parent/version_N`` for the first unused N (Lightning's naming), created."""
    number = 0
    while (parent / f"version_{number}").exists():
        number += 1
    folder = parent / f"version_{number}"
    folder.mkdir(parents=True)
    return folder


class TrainRun:
    """One ``train.py`` run: fresh model + trainer per group, per-run and summary tables."""

    def __init__(self, cli: AADCLI) -> None:
        self.cli, self.config = cli, cli.config
        self.root = Path(self.config.trainer.get("default_root_dir") or ".")
        self.summary_dir: Path | None = None

    def build(self, group: Group, several: bool) -> list[ModelMethod]:
        seed = self.config.get("seed_everything")
        if seed is not None and seed is not False:
            seed_everything(int(seed), workers=True, verbose=False)
        fresh = self.cli.parser.instantiate(self.config)
        kwargs = fresh.trainer.as_dict()
        if several and kwargs.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(
                str(self.root), name=f"lightning_logs/{group.label}"
            )
        save_config = SaveConfigCallback(self.cli.parser, self.config, overwrite=True)
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), save_config]
        name = type(fresh.model).__name__
        return [
            ModelMethod(name, fresh.model, make_trainer(kwargs), ckpt_path=self.config.ckpt_path)
        ]

    def after_group(self, result: RunResult, several: bool) -> None:
        if not rank_zero_only.rank == 0:
            return
        for (_, label), method in result.methods.items() if self.config.evaluate else ():
            run_dir = Path(getattr(method, "run_dir", None) or self.root)
            done = run_dir / "test"
            if done.exists():
                continue
            frame = result.clip_scores
            frame = frame[frame["machine_type"] == label.split("/")[0]]
            if "/" in label:
                frame = frame[frame["machine_id"] == label.split("/")[1]]
            write_results(frame, done, extra={"threshold": method.threshold})
            plot_roc_pr(frame, done)
            plot_score_histograms(frame, done, method.threshold)
        if several or len(result.failures):  # a one-group run's failure is on disk too
            if self.summary_dir is None:
                self.summary_dir = next_version_dir(self.root / "lightning_logs" / "summary")
            runs = {
                label: str(getattr(m, "run_dir", "")) for (_, label), m in result.methods.items()
            }
            write_results(
                result.clip_scores,
                self.summary_dir,
                failures=result.failures,
                runs=result.runs,
                extra={"runs": runs},
            )


def main(args: list[str] | None = None) -> pd.DataFrame | None:
    """Parse (up front: config, data, splits, clip screening), fit each group, print a table.

    Returns the metrics table (empty when nothing was scored; None on DDP ranks other than
    0); ``table.attrs["failures"]`` counts the groups that failed."""
    quiet_lightning(banners=True)
    cli = AADCLI(args=args)
    data: MachineSoundDataModule = cli.datamodule
    groups = data.groups()
    if not groups:
        raise ValueError(f"no clips under {data.root} match the data filters")
    several = len(groups) > 1
    if several and cli.config.ckpt_path:
        raise ValueError("--ckpt_path resumes one model: choose its group (--data.machine_type)")
    run = TrainRun(cli)
    check_writable(run.root)
    result = run_groups(
        groups,
        data,
        lambda group: run.build(group, several),
        after_group=lambda r: run.after_group(r, several),
        evaluate=bool(cli.config.evaluate) and rank_zero_only.rank == 0,  # rank 0 scores
    )
    if rank_zero_only.rank != 0:
        return None
    table = grouped_metrics(result.clip_scores) if len(result.clip_scores) else pd.DataFrame()
    table.attrs["failures"] = len(result.failures)
    if len(result.failures):
        say(f"\nFailed (the run went on without them; {run.summary_dir}/failures.csv):\n"
            + to_markdown(result.failures))  # fmt: skip
    if table.empty:
        return table
    where = run.summary_dir or next(
        (Path(str(m.run_dir)) / "test" for m in result.methods.values()), Path(".")
    )
    say(f"\nTest results ({len(groups)} group(s)), written to {where}:\n")
    say(to_markdown(table))
    return table
