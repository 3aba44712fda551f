"""Every method x every machine type -> one results table and figures.

    python -m aad.compare --config configs/compare.yaml [--data.root DIR] [--out results/compare]

Methods are classical detectors on pooled clip embeddings (:mod:`aad.detectors`, on
:mod:`aad.embeddings`) or reconstruction models (:mod:`aad.models`: the DCASE 2020 baseline
autoencoder, the LSTM-AE) trained on the same normal clips and scored by :mod:`aad.scoring`.
A detector can also run on a model's latent code (``embedding: latent``).

Outputs in ``out``: ``metrics.csv`` / ``metrics.md`` (AUC, pAUC, AP per method x machine type
x id, with per-type means and harmonic means), ``scores.csv`` (every clip's score),
``roc_<type>.png`` (all methods overlaid), ``auc_bars.png``, ``runs.csv`` (timings),
``config.yaml`` (the resolved configuration).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import random
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
import yaml

from aad.data.datamodule import ClipDataset, clip_length
from aad.data.manifest import ClipRecord, Manifest
from aad.detectors import detector_from_spec
from aad.embeddings import compute_embeddings, embedding_signature, resolve_device
from aad.metrics import metrics_table, to_markdown
from aad.report.compare_plots import plot_auc_bars, plot_roc_curves
from aad.report.tables import grouped_metrics
from aad.thresholds import decide

PROTOCOLS = ("clean", "study")
STUDY_PROTOCOL_LABEL = "study protocol (test includes training normals)"


# ----------------------------------------------------------------------------- config
def apply_overrides(config: dict[str, Any], overrides: Sequence[str] | None) -> dict[str, Any]:
    """``["data.root=/x", "methods.0.params.n_neighbors=5"]`` -> nested updates (YAML values).

    >>> apply_overrides({"data": {"root": "a"}}, ["data.root=b"])["data"]["root"]
    'b'
    """
    config = copy.deepcopy(config)
    for override in overrides or []:
        key, sep, raw = override.partition("=")
        if not sep:
            raise ValueError(f"override {override!r} is not key=value (e.g. data.root=/data)")
        parts = key.strip().lstrip("-").split(".")
        node: Any = config
        for part in parts[:-1]:
            if isinstance(node, list):
                node = node[int(part)]
            else:
                node = node.setdefault(part, {})
                if node is None:
                    raise ValueError(f"override {override!r}: {part!r} is null in the config")
        value = yaml.safe_load(raw) if raw.strip() else None
        if isinstance(node, list):
            node[int(parts[-1])] = value
        else:
            node[parts[-1]] = value
    return config


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """``update`` over ``base``, recursing into mappings (lists are replaced whole)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def read_config_file(path: str | Path) -> dict[str, Any]:
    """A compare YAML; ``extends: other.yaml`` (relative to this file) is merged underneath."""
    path = Path(path)
    with open(path) as handle:
        config = yaml.safe_load(handle) or {}
    parent = config.pop("extends", None)
    if parent is None:
        return config
    return deep_merge(read_config_file(path.parent / parent), config)


def load_config(path: str | Path, overrides: Sequence[str] | None = None) -> dict[str, Any]:
    """The compare YAML with overrides applied and defaults filled in."""
    config = read_config_file(path)
    config = apply_overrides(config, overrides)
    config.setdefault("seed", 0)
    config.setdefault("out", "results/compare")
    config.setdefault("features", {})
    data = config.setdefault("data", {})
    data.setdefault("layout", "auto")
    data.setdefault("machine_types", None)
    data.setdefault("machine_ids", None)
    data.setdefault("per_id", False)
    data.setdefault("channel", 0)
    data.setdefault("clip_seconds", None)
    data.setdefault("protocol", "clean")
    data.setdefault("train_fraction", 0.8)
    data.setdefault("strict", False)
    if data["protocol"] not in PROTOCOLS:
        raise ValueError(f"data.protocol must be one of {PROTOCOLS}, got {data['protocol']!r}")
    if "root" not in data or data["root"] is None:
        raise ValueError("data.root is not set (give --data.root DIR)")
    embedding = config.setdefault("embedding", {})
    embedding.setdefault("mode", "pooled")
    embedding.setdefault("stats", ["mean", "std"])
    embedding.setdefault("batch_size", 32)
    embedding.setdefault("device", "auto")
    embedding.setdefault("cache_dir", ".cache/aad")
    embedding.setdefault("num_workers", 0)
    methods = [resolve_preset(m, Path(path).parent) for m in config.get("methods") or []]
    config["methods"] = methods
    if not methods:
        raise ValueError(f"{path}: 'methods' lists no method to compare")
    names = [m.get("name") for m in methods]
    if None in names or len(set(names)) != len(names):
        raise ValueError(f"every method needs a unique 'name'; got {names}")
    return config


def resolve_preset(spec: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """A method entry with ``preset: configs/detectors/lof.yaml`` merged under its own keys.

    The preset path is tried as given (relative to the working directory), then relative
    to the compare config's folder. ``params`` are merged key by key.
    """
    if "preset" not in spec:
        return spec
    path = Path(spec["preset"])
    if not path.exists() and (config_dir / path).exists():
        path = config_dir / path
    if not path.exists():
        raise ValueError(f"method {spec.get('name')!r}: preset {spec['preset']} not found")
    with open(path) as handle:
        preset = yaml.safe_load(handle) or {}
    merged = {**preset, **{k: v for k, v in spec.items() if k != "preset"}}
    merged["params"] = {**(preset.get("params") or {}), **(spec.get("params") or {})}
    return merged


# ----------------------------------------------------------------------------- data
@dataclass
class Group:
    """The clips one model is fitted on and scored on (a machine type, or a type + id)."""

    machine_type: str
    machine_id: str | None
    train: list[ClipRecord]
    test: list[ClipRecord]
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return (
            self.machine_type
            if self.machine_id is None
            else f"{self.machine_type}/{self.machine_id}"
        )


def read_records(data: dict[str, Any], seed: int, sample_rate: int = 16000) -> Manifest:
    """The manifest of ``data.root`` (generating the synthetic set there first if asked),
    with unreadable clips dropped (one warning; ``data.strict: true`` raises) exactly as
    ``MachineSoundDataModule`` drops them for train.py."""
    from aad.data.audio import validate_clips
    from aad.data.readers import read_manifest

    root = Path(data["root"])
    synthetic = data.get("synthetic")
    if synthetic:
        from aad.data.synthetic import generate_if_missing

        generate_if_missing(root, **synthetic)
    manifest = read_manifest(root, data["layout"], seed=seed, snr=data.get("snr"))
    manifest = manifest.filter(machine_type=data["machine_types"], machine_id=data["machine_ids"])
    return validate_clips(manifest, sample_rate, bool(data.get("strict", False)), data["channel"])


def study_split(records: Sequence[ClipRecord], fraction: float, seed: int) -> list[ClipRecord]:
    """The Exploring-AAD protocol: train = a seeded ``fraction`` of ALL normal clips; the
    returned test list is every clip (training normals included, so scores are optimistic)."""
    normal = sorted((r for r in records if r.label == "normal"), key=lambda r: r.path)
    rng = random.Random(f"study:{seed}")
    n_train = max(1, int(round(fraction * len(normal))))
    return sorted(rng.sample(normal, n_train), key=lambda r: r.path)


def make_groups(manifest: Manifest, data: dict[str, Any], seed: int) -> list[Group]:
    """One group per machine type (ids pooled) or per (type, id) with ``data.per_id``."""
    groups: list[Group] = []
    for machine_type in manifest.machine_types:
        of_type = manifest.filter(machine_type=machine_type)
        keys = of_type.unique("machine_id") if data["per_id"] else [None]
        for machine_id in keys:
            clips = of_type.filter(machine_id=machine_id).records
            labelled = sorted((r for r in clips if r.label != "unknown"), key=lambda r: r.path)
            if data["protocol"] == "study":
                train = study_split(labelled, float(data["train_fraction"]), seed)
                test = labelled
                notes = [STUDY_PROTOCOL_LABEL]
            else:
                train = sorted(
                    (r for r in clips if r.split == "train" and r.label == "normal"),
                    key=lambda r: r.path,
                )
                test = [r for r in labelled if r.split == "test"]
                notes = []
            groups.append(Group(machine_type, machine_id, train, test, notes))
    return groups


# ----------------------------------------------------------------------------- methods
def method_kind(spec: dict[str, Any]) -> str:
    """``model`` (a LightningModule trained here) or ``detector`` (a classical detector)."""
    return "model" if "model" in spec else "detector"


def detector_spec(spec: dict[str, Any], seed: int) -> dict[str, Any]:
    """The registry spec of a detector method, ``random_state`` defaulting to the seed."""
    if "class_path" in spec:
        out = {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}
        out["init_args"].setdefault("random_state", seed)
    else:
        out = {"name": spec.get("detector", spec["name"]), "params": dict(spec.get("params") or {})}
        out["params"].setdefault("random_state", seed)
    return out


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch seeds (Lightning's helper, quietly)."""
    L.seed_everything(seed, workers=True, verbose=False)


def build_module(spec: dict[str, Any], features: dict[str, Any] | None) -> Any:
    """Instantiate the LightningModule of a model method (``class_path`` + ``init_args``)."""
    import importlib

    model = spec["model"]
    module_name, _, class_name = str(model["class_path"]).rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    init_args = dict(model.get("init_args") or {})
    if "features" not in init_args and features is not None and spec.get("use_global_features"):
        init_args["features"] = features
    return cls(**init_args)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Lightning's per-fit banners (GPU available, tips) hidden while compare trains."""
    logger = logging.getLogger("lightning.pytorch")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


class _RecordsDataModule(L.LightningDataModule):
    """Train (seeded shuffle) and threshold loaders over a group's normal training clips."""

    def __init__(self, dataset: ClipDataset, batch_size: int, num_workers: int, seed: int):
        super().__init__()
        self.dataset, self.batch_size, self.num_workers, self.seed = (
            dataset,
            batch_size,
            num_workers,
            seed,
        )
        self.sample_rate = dataset.sample_rate

    def train_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.dataset,
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers,
        )

    def threshold_dataloader(self) -> torch.utils.data.DataLoader:
        return torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, num_workers=self.num_workers
        )


def train_and_score_model(
    spec: dict[str, Any],
    group: Group,
    config: dict[str, Any],
) -> tuple[Any, np.ndarray]:
    """Train a model method on the group's normal clips (``aad.training.fit_module``) and
    score its test clips (``aad.scoring.score_dataloader``, the one scoring path)."""
    from aad.scoring import score_dataloader
    from aad.training import fit_module

    seed = int(config["seed"])
    seed_everything(seed)
    module = build_module(spec, config.get("features"))
    # clip length at the model's own rate (its features may differ from the global ones)
    num_samples = clip_length(
        config["data"].get("clip_seconds"), module.sample_rate, group.train or group.test
    )
    channel = config["data"]["channel"]
    batch_size = int(spec.get("batch_size", 16))
    workers = int(config["embedding"]["num_workers"])
    train_set = ClipDataset(group.train, module.sample_rate, num_samples, channel)
    datamodule = _RecordsDataModule(train_set, batch_size, workers, seed)
    trainer_kwargs = {"max_epochs": 10, **(spec.get("trainer") or {})}
    with warnings.catch_warnings(), _quiet_lightning():
        warnings.filterwarnings("ignore", ".*does not have many workers.*")
        warnings.filterwarnings("ignore", ".*number of training batches.*")
        warnings.filterwarnings("ignore", ".*no `val_dataloader`.*")
        warnings.filterwarnings("ignore", ".*LeafSpec.*")
        warnings.filterwarnings("ignore", ".*overridden `on_after_batch_transfer`.*")
        fit_module(module, datamodule, trainer_kwargs)
    module.to(resolve_device(config["embedding"]["device"]))
    test_set = ClipDataset(group.test, module.sample_rate, num_samples, channel)
    test_loader = torch.utils.data.DataLoader(test_set, batch_size=batch_size, num_workers=workers)
    scored = score_dataloader(module, test_loader)
    scores = np.empty(len(group.test))
    scores[scored["index"]] = scored["score"]
    return module, scores


def embed(
    records: Sequence[ClipRecord],
    config: dict[str, Any],
    spec: dict[str, Any],
    reference: Sequence[ClipRecord],
    module: Any = None,
) -> np.ndarray:
    """Embeddings of records for one detector method (global settings + method overrides);
    clips are cut to ``data.clip_seconds`` (or the length of ``reference[0]``) at the rate
    of the features actually used (the method's, or the latent model's)."""
    from aad.features import FeatureConfig

    settings = {**config["embedding"], **(spec.get("embedding_params") or {})}
    features = deep_merge(config.get("features") or {}, spec.get("features") or {})
    if module is not None:
        rate = module.sample_rate
    else:
        rate = FeatureConfig.from_dict(features).sample_rate
    num_samples = clip_length(config["data"].get("clip_seconds"), int(rate), reference)
    return compute_embeddings(
        records,
        features,
        mode=settings["mode"],
        stats=tuple(settings["stats"]),
        batch_size=int(settings["batch_size"]),
        device=settings["device"],
        cache_dir=settings["cache_dir"],
        source="latent" if module is not None else "features",
        module=module,
        channel=config["data"]["channel"],
        num_samples=num_samples,
        num_workers=int(settings["num_workers"]),
        progress=bool(config.get("progress", True)),
    )


def run_group(
    group: Group, config: dict[str, Any]
) -> tuple[list[pd.DataFrame], list[dict[str, Any]]]:
    """Every method on one group: per-clip score frames and timing rows."""
    seed = int(config["seed"])
    methods = config["methods"]
    trained: dict[str, Any] = {}
    frames: list[pd.DataFrame] = []
    runs: list[dict[str, Any]] = []
    reference = group.train or group.test  # data.clip_seconds null: this clip's length
    # models first, so detectors on their latent code can reuse them
    order = sorted(range(len(methods)), key=lambda i: method_kind(methods[i]) != "model")
    results: dict[int, pd.DataFrame] = {}
    for index in order:
        spec = methods[index]
        name = spec["name"]
        start = time.perf_counter()
        if method_kind(spec) == "model":
            module, scores = train_and_score_model(spec, group, config)
            trained[name] = module
            threshold = float(module.threshold)
        else:
            module = None
            if spec.get("embedding") == "latent":
                source = spec.get("latent_model")
                if source not in trained:
                    raise ValueError(
                        f"method {name!r}: embedding 'latent' needs latent_model naming a "
                        f"model method of this config; got {source!r} (models: {sorted(trained)})"
                    )
                module = trained[source]
            detector = detector_from_spec(detector_spec(spec, seed))
            train_x = embed(group.train, config, spec, reference, module)
            signature = _signature(config, spec, module)
            detector.fit(train_x, feature_signature=signature)
            test_x = embed(group.test, config, spec, reference, module)
            scores = detector.decision_function(test_x, feature_signature=signature)
            threshold = float(detector.threshold_)
        seconds = time.perf_counter() - start
        frame = _scores_frame(group, name, scores, threshold)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            auc = metrics_table(frame).query("machine_id == 'mean'")["auc"]
        auc_text = f"{float(auc.iloc[0]):.3f}" if len(auc) else "n/a"
        print(
            f"[compare] {name:<22} {group.label:<18} train {len(group.train):>5}  "
            f"test {len(group.test):>5}  mean AUC {auc_text}  ({seconds:.1f} s)",
            flush=True,
        )
        results[index] = frame
        runs.append(
            {
                "method": name,
                "machine_type": group.machine_type,
                "machine_id": group.machine_id or "all",
                "n_train": len(group.train),
                "n_test": len(group.test),
                "seconds": round(seconds, 3),
            }
        )
    frames = [results[i] for i in range(len(methods))]
    return frames, runs


def _signature(config: dict[str, Any], spec: dict[str, Any], module: Any) -> str:
    settings = {**config["embedding"], **(spec.get("embedding_params") or {})}
    if module is not None:
        return f"latent:{spec.get('latent_model')}:{module.feature_signature}"
    features = deep_merge(config.get("features") or {}, spec.get("features") or {})
    return embedding_signature(features, settings["mode"], tuple(settings["stats"]))


def _scores_frame(group: Group, method: str, scores: np.ndarray, threshold: float) -> pd.DataFrame:
    if not np.all(np.isfinite(scores)):
        raise ValueError(f"method {method!r} produced NaN/Inf scores on {group.label}")
    return pd.DataFrame(
        {
            "method": method,
            "machine_type": [r.machine_type for r in group.test],
            "machine_id": [r.machine_id for r in group.test],
            "path": [r.path for r in group.test],
            "split": [r.split for r in group.test],
            "target": [r.target for r in group.test],
            "score": np.asarray(scores, dtype=np.float64),
            "decision": decide(scores, threshold),
        }
    )


# ----------------------------------------------------------------------------- tables
def results_table(clip_scores: pd.DataFrame) -> pd.DataFrame:
    """Per method: :func:`aad.metrics.metrics_table` rows (ids, per-type mean/hmean, ALL),
    stacked by :func:`aad.report.tables.grouped_metrics` as evaluate.py stacks its models."""
    return grouped_metrics(clip_scores, "method")


def summary_table(table: pd.DataFrame, metric: str = "auc") -> pd.DataFrame:
    """Wide view: one row per method, one column per machine type (mean over ids)."""
    means = table[(table["machine_id"] == "mean") & (table["machine_type"] != "ALL")]
    wide = means.pivot(index="method", columns="machine_type", values=metric)
    wide = wide.reindex(list(dict.fromkeys(table["method"])))
    hmeans = table[(table["machine_id"] == "hmean")]
    overall = hmeans[hmeans["machine_type"] == "ALL"].set_index("method")[metric]
    if overall.empty:
        overall = hmeans.set_index("method")[metric]
    wide[f"hmean {metric}"] = overall.reindex(wide.index)
    return wide.reset_index()


def write_outputs(
    clip_scores: pd.DataFrame, runs: pd.DataFrame, config: dict[str, Any], out: Path
) -> pd.DataFrame:
    """metrics.csv/.md, scores.csv, runs.csv, config.yaml, ROC and bar PNGs."""
    out.mkdir(parents=True, exist_ok=True)
    table = results_table(clip_scores)
    table.to_csv(out / "metrics.csv", index=False, float_format="%.6f")
    clip_scores.to_csv(out / "scores.csv", index=False, float_format="%.8g")
    runs.to_csv(out / "runs.csv", index=False)
    with open(out / "config.yaml", "w") as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
    protocol = config["data"]["protocol"]
    grouping = (
        "one model per machine type and id"
        if config["data"]["per_id"]
        else "one model per machine type (ids pooled)"
    )
    title = (
        f"# Method comparison ({'clean split' if protocol == 'clean' else STUDY_PROTOCOL_LABEL})"
    )
    lines = [
        title,
        "",
        f"data: `{config['data']['root']}`, seed {config['seed']}, {grouping}",
        "",
        "## AUC (mean over ids) by method and machine type",
        "",
        to_markdown(summary_table(table, "auc")),
        "",
        "## pAUC (max FPR 0.1, mean over ids)",
        "",
        to_markdown(summary_table(table, "pauc")),
        "",
        "## Every method x machine type x id",
        "",
        to_markdown(table.drop(columns=[c for c in ("precision", "recall", "f1") if c in table])),
        "",
    ]
    (out / "metrics.md").write_text("\n".join(lines))
    for machine_type in sorted(clip_scores["machine_type"].unique()):
        plot_roc_curves(clip_scores, machine_type, out / f"roc_{machine_type}.png")
    bars = table[(table["machine_id"] == "mean") & (table["machine_type"] != "ALL")]
    plot_auc_bars(bars[["method", "machine_type", "auc"]], out / "auc_bars.png")
    return table


# ----------------------------------------------------------------------------- entry
def main(config_path: str, overrides: list[str] | None = None) -> pd.DataFrame:
    """Run every method of ``config_path`` on every group; write and return the table.

    ``overrides``: ``["data.root=/d", "out=x"]`` or CLI tokens ``["--data.root", "/d"]``.
    """
    config = load_config(config_path, normalise_overrides(overrides))
    seed = int(config["seed"])
    seed_everything(seed)
    sample_rate = int(config["features"].get("sample_rate", 16000))
    manifest = read_records(config["data"], seed, sample_rate)
    groups = make_groups(manifest, config["data"], seed)
    if not groups:
        raise ValueError(f"no clips under {config['data']['root']} match the data filters")
    frames: list[pd.DataFrame] = []
    runs: list[dict[str, Any]] = []
    for group in groups:
        if not group.train:
            raise ValueError(
                f"{group.label}: no normal training clips under {config['data']['root']} "
                "(a test-only set? use data.protocol=study for the study's protocol)"
            )
        if not group.test:
            raise ValueError(f"{group.label}: no labelled test clips to score")
        note = f" [{'; '.join(group.notes)}]" if group.notes else ""
        print(f"[compare] {group.label}: {len(group.train)} train, {len(group.test)} test{note}")
        group_frames, group_runs = run_group(group, config)
        frames.extend(group_frames)
        runs.extend(group_runs)
    clip_scores = pd.concat(frames, ignore_index=True)
    order = {spec["name"]: i for i, spec in enumerate(config["methods"])}
    clip_scores = clip_scores.sort_values(
        ["method", "machine_type", "machine_id", "path"],
        key=lambda c: c.map(order) if c.name == "method" else c,
        kind="stable",
    ).reset_index(drop=True)
    out = Path(config["out"])
    table = write_outputs(clip_scores, pd.DataFrame(runs), config, out)
    summary = summary_table(table, "auc")
    print(to_markdown(summary))
    print(f"[compare] wrote {out}/metrics.csv, metrics.md, scores.csv and figures")
    return table


def parse_args(argv: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """``--config X`` plus ``--a.b value`` / ``--a.b=value`` overrides (``--out`` included)."""
    parser = argparse.ArgumentParser(
        prog="python -m aad.compare", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--config", required=True, help="compare YAML (configs/compare.yaml)")
    parser.add_argument("--out", help="output folder (overrides 'out')")
    args, rest = parser.parse_known_args(argv)
    overrides = [f"out={args.out}"] if args.out else []
    try:
        overrides += normalise_overrides(rest)
    except ValueError as err:
        parser.error(str(err))
    return args.config, overrides


def normalise_overrides(items: Sequence[str] | None) -> list[str]:
    """``["--a.b", "v", "--c=d", "e=f"]`` -> ``["a.b=v", "c=d", "e=f"]``."""
    overrides: list[str] = []
    items = list(items or [])
    index = 0
    while index < len(items):
        item = items[index]
        if not item.startswith("--"):
            if "=" not in item:
                raise ValueError(
                    f"unexpected argument {item!r} (overrides look like --data.root DIR)"
                )
            overrides.append(item)
            index += 1
        elif "=" in item:
            overrides.append(item[2:])
            index += 1
        elif index + 1 < len(items):
            overrides.append(f"{item[2:]}={items[index + 1]}")
            index += 2
        else:
            raise ValueError(f"{item} needs a value")
    return overrides


def cli(argv: Sequence[str] | None = None) -> int:
    config_path, overrides = parse_args(argv)
    main(config_path, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(cli())
