"""Choose the LSTM-AE and DCASE AE defaults on real clips (issue 11 item 5).

Protocol P1 on ``dcase2020-mini``: ``MachineSoundDataModule(root, train_from_test=0.5,
clip_seconds=10.0).groups()`` (per type half the normal test clips, sorted by path, drawn by
``random.Random(0)``, train the type's model; the rest of its test clips are scored; AUC and
pAUC (max FPR 0.1) over the type's pooled test clips, then the mean over the 6 types).
``dcase2020-slider-id00``: 75 training clips (8 held out for ``val/loss``), 5 + 4 test clips.

Every fit is the project's own path: ``seed_everything(seed)``, a fresh module, a trainer from
``aad.engine.fit.make_trainer`` with ``ModelCheckpoint(monitor="val/loss")`` and
``EarlyStopping(monitor="val/loss", patience=...)``, ``fit_model``, then ``ModelMethod.score``.
One fit is scored four ways (the checkpoint choice does not depend on the score):
``mean``, ``top8``/``top32`` (``score="topk"``) and ``maha`` (``score="mahalanobis"``, its
statistics fitted by ``module.calibrate`` on the validation clips). The reference ``zero`` is
the reconstruction error of a model that outputs 0 (mean squared normalised feature), i.e.
what an autoencoder that learnt nothing would score.

Speed-ups (``--exact`` turns both off, for timings): features memoised per (feature config,
waveform), and the per-epoch ``calibrate`` skipped (``fit_model`` calibrates the chosen
checkpoint once); neither touches weights, RNG or ``val/loss``: same checkpoints, same AUCs.
Finished (variant, data set, group, seed) rows are cached in ``--cache`` (JSON lines).

    python benchmarks/ae_study.py --list
    python benchmarks/ae_study.py --variants lstm_default lstm_e100 --seeds 0 --data p1
    python benchmarks/ae_study.py --variants lstm_default dcase_default   # 3 seeds, both sets
    python benchmarks/ae_study.py --summary        # one line per variant found in the cache
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCORE_MODES = {"mean": ("mean", 32), "top8": ("topk", 8), "top32": ("topk", 32),
               "maha": ("mahalanobis", 32)}  # fmt: skip
REFERENCE = "zero"
MEL = {"features": ["mel"]}
MEL128 = {"features": ["mel"], "mel": {"n_mels": 128}}
MEL_MFCC = {"features": ["mel", "mfcc"]}
DCASE_MEL64 = {"features": ["mel"], "stft": {"pad_mode": "reflect"}, "stack_frames": 5,
               "mel": {"n_mels": 64, "log": "dcase", "eps": 2.220446049250313e-16}}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One configuration: model class, its constructor arguments and the trainer settings."""

    model: str  # "lstm" or "dcase"
    kwargs: dict[str, Any] = field(default_factory=dict)
    max_epochs: int = 10
    patience: int = 5
    batch_size: int = 16

    def key(self) -> str:
        payload = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _v(model: str, epochs: int = 10, batch: int = 16, patience: int = 5, **kwargs: Any) -> Variant:
    return Variant(model, kwargs, epochs, patience, batch)


VARIANTS: dict[str, Variant] = {
    # the current defaults (configs/trainer/default.yaml: 10 epochs, patience 5; batch 16)
    "lstm_default": _v("lstm"),
    "dcase_default": _v("dcase"),
    # round 1: how much training (steps = epochs x ceil(clips / batch))
    "lstm_e100": _v("lstm", 100),
    "lstm_e100_lr3e-3": _v("lstm", 100, learning_rate=3e-3),
    "lstm_e100_lr1e-2": _v("lstm", 100, learning_rate=1e-2),
    "lstm_e100_b4": _v("lstm", 100, batch=4),
    "lstm_e100_s8": _v("lstm", 100, train_stride=8),
    "dcase_e100": _v("dcase", 100),
    "dcase_e100_lr3e-3": _v("dcase", 100, learning_rate=3e-3),
    "dcase_e100_b4": _v("dcase", 100, batch=4),
    "dcase_e100_raw": _v("dcase", 100, normalize=False),
    # round 2 (LSTM on round 1's best training, lr 1e-2 x 100 epochs): features and sizes
    "lstm_r2_mel": _v("lstm", 100, learning_rate=1e-2, features=MEL),
    "lstm_r2_mel128": _v("lstm", 100, learning_rate=1e-2, features=MEL128),
    "lstm_r2_melmfcc": _v("lstm", 100, learning_rate=1e-2, features=MEL_MFCC),
    "lstm_r2_h128": _v("lstm", 100, learning_rate=1e-2, hidden_size=128, latent_size=32),
    "lstm_r2_w16": _v("lstm", 100, learning_rate=1e-2, window=16),
    "lstm_r2_l8": _v("lstm", 100, learning_rate=1e-2, latent_size=8),
    # the round-2 features alone, with the current training (lr 1e-3, 10 epochs)
    "lstm_melmfcc_e10": _v("lstm", features=MEL_MFCC),
    "lstm_mel128_e10": _v("lstm", features=MEL128),
    # round 2 (DCASE AE at 100 epochs, lr 1e-3): sizes and inputs
    "dcase_r2_l16": _v("dcase", 100, latent_size=16),
    "dcase_r2_h64": _v("dcase", 100, hidden_size=64, num_hidden=2),
    "dcase_r2_mel64": _v("dcase", 100, features=DCASE_MEL64),
}


# ---------------------------------------------------------------------------- fitting
_FEATURE_CACHE: dict[tuple[str, str], torch.Tensor] = {}


def memoise_features(module: Any) -> None:
    """Memoise ``module.features.forward`` per (feature signature, waveform bytes)."""
    extractor, signature = module.features, module.feature_signature
    original = extractor.forward

    def forward(waveform: torch.Tensor, clip_names: Any = None) -> torch.Tensor:
        rows = waveform.detach().cpu().contiguous()
        keys = [(signature, hashlib.blake2b(r.numpy().tobytes()).hexdigest()) for r in rows]
        missing = [i for i, k in enumerate(keys) if k not in _FEATURE_CACHE]
        if missing:
            computed = original(waveform[missing])
            for i, value in zip(missing, computed, strict=True):
                _FEATURE_CACHE[keys[i]] = value.detach().cpu()
        return torch.stack([_FEATURE_CACHE[k] for k in keys]).to(waveform.device)

    extractor.forward = forward


def build_module(variant: Variant) -> Any:
    from aad.models import DCASEAE, LSTMAE

    return (LSTMAE if variant.model == "lstm" else DCASEAE)(**variant.kwargs)


def fit_and_score(
    variant: Variant, data: Any, group: Any, seed: int, exact: bool = False
) -> dict[str, Any]:
    """One fit on ``group`` -> its timings, epochs and the test AUC/pAUC of every score mode."""
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from aad.engine.fit import fit_model, make_trainer
    from aad.engine.methods import ModelMethod
    from aad.metrics import binary_metrics
    from aad.scoring import ErrorCovariance

    L.seed_everything(seed, verbose=False)
    module = build_module(variant)
    if not exact:
        memoise_features(module)
        module.on_validation_epoch_end = lambda: None
    bound = data.for_group(group, module.sample_rate)
    bound.batch_size = variant.batch_size
    labels = np.array([r.target for r in group.test])
    with tempfile.TemporaryDirectory() as run_dir:
        # fmt: off
        callbacks = [ModelCheckpoint(dirpath=run_dir, monitor="val/loss", save_last=False),
                     EarlyStopping(monitor="val/loss", patience=variant.patience)]
        trainer = make_trainer({
            "max_epochs": variant.max_epochs, "deterministic": True, "logger": False,
            "enable_progress_bar": False, "enable_model_summary": False,
            "num_sanity_val_steps": 0, "default_root_dir": run_dir, "callbacks": callbacks})
        # fmt: on
        start, cpu = time.perf_counter(), time.process_time()
        fit_model(module, bound, trainer)
        # fmt: off
        row: dict[str, Any] = {
            "fit_s": time.perf_counter() - start, "fit_cpu_s": time.process_time() - cpu,
            "epochs": trainer.current_epoch, "n_train": len(group.train),
            "best_val": float(trainer.checkpoint_callback.best_model_score),
            "n_val": len(group.val), "n_test": len(labels)}
        # fmt: on
    method = ModelMethod("ae", module)
    for name, (score, top_k) in SCORE_MODES.items():
        module.score_name, module.top_k = score, top_k
        module.error_covariance = None
        if score == "mahalanobis":
            module.error_covariance = ErrorCovariance(module.input_dim)
            module.calibrate(bound.val_dataloader())
        metrics = binary_metrics(labels, method.score(bound, group.test))
        row[f"{name}_auc"], row[f"{name}_pauc"] = metrics["auc"], metrics["pauc"]
    test = [module.prepare_features(b["waveform"]) for b in bound.loader("test")]
    metrics = binary_metrics(labels, torch.cat([t.square().mean(dim=(1, 2)) for t in test]))
    row[f"{REFERENCE}_auc"], row[f"{REFERENCE}_pauc"] = metrics["auc"], metrics["pauc"]
    return row


REFERENCE_FEATURES: dict[str, dict[str, Any] | None] = {
    "lstm default (mel64+mfcc20+cens12)": {}, "mel64": MEL, "mel128": MEL128,
    "mel64+mfcc20": MEL_MFCC, "cens12": {"features": ["cens"]}, "dcase default (mel128 x 5)": None,
}  # fmt: skip


def reference_scores(features: dict[str, Any] | None, data: Any, group: Any) -> dict[str, float]:
    """AUCs without any model: ``zero`` (mean squared normalised feature) and ``zero_maha``
    (Mahalanobis of the normalised frames under the training frames' covariance, mean over
    frames): the floors an autoencoder's ``mean`` and ``maha`` scores should beat."""
    from aad.metrics import binary_metrics
    from aad.models import DCASEAE, LSTMAE
    from aad.scoring import ErrorCovariance

    module = DCASEAE() if features is None else LSTMAE(features=features)
    bound = data.for_group(group, module.sample_rate)
    fitting = list({r.path: r for r in [*group.train, *group.val]}.values())
    module.fit_normalizer(bound.loader("fit", records=fitting))
    covariance = ErrorCovariance(module.input_dim)
    for batch in bound.loader("fit", records=fitting):
        frames = module.prepare_features(batch["waveform"]).flatten(0, 1)
        covariance.update(frames, torch.zeros(len(frames), dtype=torch.long))
    covariance.finalize()
    test = torch.cat([module.prepare_features(b["waveform"]) for b in bound.loader("test")])
    labels = [r.target for r in group.test]
    return {
        "zero": binary_metrics(labels, test.square().mean(dim=(1, 2)).numpy())["auc"],
        "zero_maha": binary_metrics(labels, covariance(test).mean(dim=1).numpy())["auc"],
    }


# ---------------------------------------------------------------------------- cache + tables
def load_rows(path: Path) -> dict[tuple, dict]:
    rows: dict[tuple, dict] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                rows[(row["key"], row["data"], row["group"], row["seed"])] = row
    return rows


def per_seed(rows: list[dict], column: str) -> np.ndarray:
    """``column`` averaged over the groups of each seed (one value per seed)."""
    seeds = sorted({r["seed"] for r in rows})
    return np.array([np.mean([r[column] for r in rows if r["seed"] == k]) for k in seeds])


def spread(values: np.ndarray) -> str:
    """``mean +- sd`` over seeds (just the mean for one seed)."""
    sd = f" +- {values.std(ddof=1):.3f}" if len(values) > 1 else ""
    return f"{values.mean():.3f}{sd}" if len(values) else "-"


# fmt: off
def p1_table(name: str, rows: list[dict]) -> str:
    """Per type AUC (mean over seeds), the mean over types (sd over seeds), per score mode."""
    groups = sorted({r["group"] for r in rows})
    lines = [f"#### {name}: P1, seeds {sorted({r['seed'] for r in rows})}", "",
             "| score | " + " | ".join(groups) + " | mean AUC | mean pAUC |",
             "|---" * (len(groups) + 3) + "|"]
    for score in [*SCORE_MODES, REFERENCE]:
        cells = [np.mean([r[f"{score}_auc"] for r in rows if r["group"] == g]) for g in groups]
        lines.append(f"| {score} | " + " | ".join(f"{c:.3f}" for c in cells) + f" | "
                     f"{spread(per_seed(rows, f'{score}_auc'))} | "
                     f"{spread(per_seed(rows, f'{score}_pauc'))} |")
    return "\n".join(lines) + "\n\n" + timing(rows)


def slider_line(name: str, rows: list[dict]) -> str:
    parts = [f"{score} {spread(per_seed(rows, f'{score}_auc'))} / "
             f"{per_seed(rows, f'{score}_pauc').mean():.3f}"
             for score in [*SCORE_MODES, REFERENCE]]
    seeds = sorted({r["seed"] for r in rows})
    return f"{name}: slider seeds {seeds}, AUC / pAUC: " + "; ".join(parts) + ". " + timing(rows)


def timing(rows: list[dict]) -> str:
    fit, cpu = (np.array([r[k] for r in rows]) for k in ("fit_s", "fit_cpu_s"))
    epochs = np.mean([r["epochs"] for r in rows])
    return (f"fit wall {fit.mean():.1f} s (max {fit.max():.1f}), CPU {cpu.mean():.1f} s, "
            f"epochs {epochs:.0f} per fit")


def summary(cached: dict[tuple, dict]) -> str:
    """Every cached variant: P1 mean AUC per score (mean +- sd over seeds), slider AUC, fit s."""
    names = {v.key(): n for n, v in VARIANTS.items()}
    found: dict[str, list[dict]] = {}
    for row in cached.values():
        exact = " (exact)" if row["key"].endswith("-exact") else ""
        name = names.get(row["key"].removesuffix("-exact"), row["variant"]) + exact
        found.setdefault(name, []).append(row)
    scores = [*SCORE_MODES, REFERENCE]
    lines = ["| variant | P1 seeds | " + " | ".join(f"P1 {s}" for s in scores)
             + " | slider mean / maha (fits) | fit s P1 / slider |",
             "|---" * (len(scores) + 4) + "|"]
    for name, rows in found.items():
        p1, slider = ([r for r in rows if r["data"] == d] for d in ("p1", "slider"))
        cells = [spread(per_seed(p1, f"{s}_auc")) for s in scores]
        sl = " / ".join(f"{np.mean([r[f'{s}_auc'] for r in slider]):.3f}" for s in ("mean", "maha"))
        fit = " / ".join(f"{np.mean([r['fit_s'] for r in x]):.0f}" if x else "-"
                         for x in (p1, slider))
        lines.append(f"| {name} | {len({r['seed'] for r in p1})} | " + " | ".join(cells)
                     + f" | {sl if slider else '-'} ({len(slider)}) | {fit} |")
    return "\n".join(lines)
# fmt: on


def print_references(sets: dict[str, Any], groups: list[str] | None) -> None:
    for data_name, data in sets.items():
        print(f"#### model-free references on {data_name}: AUC zero / zero_maha\n")
        for name, features in REFERENCE_FEATURES.items():
            found = [(g.label, reference_scores(features, data, g)) for g in selected(data, groups)]
            cells = [f"{g} {r['zero']:.3f} / {r['zero_maha']:.3f}" for g, r in found]
            means = [np.mean([r[k] for _, r in found]) for k in ("zero", "zero_maha")]
            print(f"- {name}: mean {means[0]:.3f} / {means[1]:.3f} ({'; '.join(cells)})")
        print(flush=True)


def selected(data: Any, groups: list[str] | None) -> list[Any]:
    return [g for g in data.groups() if not groups or g.label in groups]


def run_variant(name: str, data_name: str, data: Any, args: Any, cached: dict) -> list[dict]:
    """Every (seed, group) row of one variant on one data set, fitting what is not cached."""
    variant, rows = VARIANTS[name], []
    for seed in args.seeds:
        for group in selected(data, args.groups):
            key = (variant.key() + ("-exact" if args.exact else ""), data_name, group.label, seed)
            if key not in cached:
                row = fit_and_score(variant, data, group, seed, args.exact)
                row.update(variant=name, key=key[0], data=data_name, group=group.label, seed=seed)
                cached[key] = row
                with args.cache.open("a") as out:
                    out.write(json.dumps(row) + "\n")
                print(
                    f"  {name} {data_name} {group.label} seed {seed}: mean AUC "
                    f"{row['mean_auc']:.3f}, maha {row['maha_auc']:.3f}, "
                    f"{row['fit_s']:.1f} s, {row['epochs']} epochs",
                    flush=True,
                )
            rows.append(cached[key])
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["lstm_default", "dcase_default"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data", choices=["p1", "slider", "both"], default="both")
    parser.add_argument("--groups", nargs="+", help="only these machine types (e.g. for timing)")
    parser.add_argument("--root", type=Path, default=SHARED / "dcase2020-mini")
    parser.add_argument("--slider-root", type=Path, default=SHARED / "dcase2020-slider-id00")
    parser.add_argument("--cache", type=Path, default=Path("results/ae_study/rows.jsonl"))
    parser.add_argument("--refresh", action="store_true", help="refit cached rows")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--exact", action="store_true", help="no speed-ups (timings)")
    parser.add_argument("--references", action="store_true", help="model-free AUC floors")
    parser.add_argument("--summary", action="store_true", help="one line per cached variant")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, variant in VARIANTS.items():
            print(f"{name}: {asdict(variant)}")
        return
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; see --list")
    from aad.data.datamodule import MachineSoundDataModule
    from aad.engine.fit import quiet_lightning

    torch.set_num_threads(args.threads)
    quiet_lightning()
    warnings.filterwarnings("ignore", ".*too few to hold.*|.*LeafSpec.*|.*treespec.*")
    roots = {"p1": (args.root, 0.5), "slider": (args.slider_root, 0.0)}
    sets = {
        name: MachineSoundDataModule(root=str(root), train_from_test=borrow, clip_seconds=10.0)
        for name, (root, borrow) in roots.items()
        if args.data in (name, "both")
    }
    if args.references:
        print_references(sets, args.groups)
        return
    cached = {} if args.refresh else load_rows(args.cache)
    if args.summary:
        print(summary(cached))
        return
    args.cache.parent.mkdir(parents=True, exist_ok=True)
    for name in args.variants:
        for data_name, data in sets.items():
            rows = run_variant(name, data_name, data, args, cached)
            table = p1_table if data_name == "p1" else slider_line
            print(table(name, rows), "\n", flush=True)


if __name__ == "__main__":
    main()
