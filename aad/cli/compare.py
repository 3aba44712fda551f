"""``python -m aad.compare``: every method x every group -> one table and figures.

The config is typed and parsed by jsonargparse, like ``train.py``'s: ``data`` is the same
:class:`~aad.data.datamodule.MachineSoundDataModule` (same splits, same screening), ``trainer``
the same Lightning Trainer arguments (``configs/trainer/default.yaml``: validation, early
stopping, checkpoints), ``embedding`` an :class:`~aad.embeddings.EmbeddingConfig`, and
``methods`` a list of :class:`~aad.engine.methods.MethodSpec`. Unknown keys and class paths of
the wrong base class are refused before any work; so is an output folder that cannot be
written. A method that fails on a group is a row in the table with its reason; results are
written after every group.

Outputs in ``out``: ``metrics.md`` / ``metrics.csv`` / ``metrics.json`` (AUC, pAUC, AP, and
for DCASE 2021+ data AUC (source) / AUC (target), per method x type x id), ``scores.csv``,
``failures.csv``, ``runs.csv`` (settings used and timings), ``config.yaml``,
``roc_<type>.png`` and ``auc_bars.png``; model checkpoints and logs under ``runs/``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from jsonargparse import ActionConfigFile
from lightning import Trainer
from lightning.pytorch import seed_everything
from lightning.pytorch.cli import LightningArgumentParser

from aad.data.datamodule import MachineSoundDataModule
from aad.data.splits import Group
from aad.embeddings import EmbeddingConfig
from aad.engine.fit import make_trainer, quiet_lightning
from aad.engine.methods import MethodSpec, build_methods
from aad.engine.runner import RunResult, run_groups, say
from aad.metrics import to_markdown
from aad.report.compare_plots import plot_auc_bars, plot_roc_curves
from aad.report.tables import check_writable, summary_table, write_results

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "configs" / "compare.yaml"
QUIET_TRAINER = {"enable_progress_bar": False, "enable_model_summary": False}
"""compare prints one line per method and group; per-epoch bars would print over them."""


def compare_parser() -> LightningArgumentParser:
    """The typed compare config (defaults: ``configs/compare.yaml``)."""
    parser = LightningArgumentParser(
        prog="python -m aad.compare",
        description="Every method x every machine type -> one table and figures.",
        default_config_files=[str(DEFAULT_CONFIG)],
    )
    parser.add_argument("--config", action=ActionConfigFile, help="a compare YAML")
    parser.add_argument("--seed_everything", type=int, default=0)
    parser.add_argument("--out", type=str, default="results/compare", help="output folder")
    parser.add_argument("--torch_threads", type=int | None, default=None)
    parser.add_argument("--device", type=str, default="auto", help="where models score")
    parser.add_lightning_class_args(MachineSoundDataModule, "data")
    parser.add_lightning_class_args(Trainer, "trainer")
    parser.add_class_arguments(EmbeddingConfig, "embedding")
    parser.add_argument("--methods", type=list[MethodSpec], default=[])
    return parser


class CompareRun:
    """Builds fresh methods per group from the parsed config and writes results."""

    def __init__(self, parser: LightningArgumentParser, config: Any, out: Path) -> None:
        self.parser, self.config, self.out = parser, config, out

    def build(self, group: Group) -> list[Any]:
        seed_everything(self.config.seed_everything, workers=True, verbose=False)
        fresh = self.parser.instantiate(self.config)

        def trainer_for(spec: MethodSpec) -> Trainer:  # own callbacks: they hold state
            trainer = self.parser.instantiate(self.config).trainer
            kwargs = {**trainer.as_dict(), **QUIET_TRAINER, **spec.trainer}
            kwargs["default_root_dir"] = str(self.out / "runs" / spec.name / group.label)
            return make_trainer(kwargs)

        return build_methods(fresh.methods, fresh.embedding, trainer_for, self.config.device)

    def write(self, result: RunResult) -> pd.DataFrame:
        order = {spec.name: i for i, spec in enumerate(self.config.methods)}
        scores = result.clip_scores.sort_values(
            ["method", "machine_type", "machine_id", "path"],
            key=lambda c: c.map(order) if c.name == "method" else c,
            kind="stable",
        )
        data = self.config.data
        title = (
            f"Method comparison: `{data.root}`, protocol {data.protocol}, "
            f"{'per id' if data.per_id else 'ids pooled'}, seed {self.config.seed_everything}"
        )
        table = write_results(
            scores,
            self.out,
            group_column="method",
            failures=result.failures,
            runs=result.runs,
            title=title,
        )
        for machine_type in sorted(scores["machine_type"].unique()):
            plot_roc_curves(scores, machine_type, self.out / f"roc_{machine_type}.png")
        if len(table):
            bars = table[(table["machine_id"] == "mean") & (table["machine_type"] != "ALL")]
            plot_auc_bars(bars[["method", "machine_type", "auc"]], self.out / "auc_bars.png")
        return table


def main(args: list[str] | None = None) -> pd.DataFrame:
    """Run the comparison; returns the metrics table (method x type x id)."""
    quiet_lightning()
    parser = compare_parser()
    config = parser.parse_args(sys.argv[1:] if args is None else args)
    if config.torch_threads:
        torch.set_num_threads(int(config.torch_threads))
    if not config.methods:
        parser.error("methods lists no method to compare")
    names = [spec.name for spec in config.methods]
    if len(set(names)) != len(names):
        parser.error(f"every method needs a unique name; got {names}")
    models = {spec.name for spec in config.methods if spec.model is not None}
    for spec in config.methods:
        if spec.latent_model is not None and spec.latent_model not in models:
            parser.error(f"method {spec.name!r}: latent_model {spec.latent_model!r} is not a "
                         f"model method of this config (models: {sorted(models)})")  # fmt: skip
    out = Path(config.out)
    check_writable(out)
    seed_everything(config.seed_everything, workers=True, verbose=False)
    init = parser.instantiate(config)  # every class path checked and built up front
    groups = init.data.groups()
    if not groups:
        raise ValueError(f"no clips under {config.data.root} match the data filters")
    parser.save(config, out / "config.yaml", overwrite=True, skip_check=True, multifile=False)
    run = CompareRun(parser, config, out)
    result = run_groups(groups, init.data, run.build, after_group=run.write)
    table = run.write(result)
    if len(table):
        say(to_markdown(summary_table(table, "auc", result.failures)))
    if len(result.failures):
        say(f"[aad] {len(result.failures)} method/group run(s) failed: see {out}/failures.csv")
    say(f"[aad] wrote {out}/metrics.md, metrics.csv, scores.csv and figures")
    table.attrs["failures"] = len(result.failures)
    return table
