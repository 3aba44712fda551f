"""Choose the machine-id classifier's defaults on real clips (plain PyTorch loop, CPU).

Protocol P1 on ``dcase2020-mini``: ``borrow_test_normals(read_manifest(root), 0.5, seed=0)``;
per machine type the borrowed normals train one classifier whose classes are the type's
sorted machine ids; the rest of the test split is scored (AUC/pAUC over the type's pooled
test clips; a test clip whose id has no training clip is scored against every class).
``dcase2020-slider-id00`` (one id) trains on its 75 training clips with the four
pseudo-classes of :class:`aad.models.classifier.augment.PseudoClasses`.

Scores per clip: ``nll`` (a: mean over crops of -log p(own class)), ``knn`` (b: cosine
distance of the clip's mean embedding to the nearest training clip's mean embedding of its
class), ``maha`` (c: Mahalanobis of the clip's mean embedding to the class's training crop
embeddings, Ledoit-Wolf), and crop-level ``knn_crop`` / ``maha_crop`` (each crop against
the training crops, averaged over the clip's crops).

    python benchmarks/classifier_study.py                        # default variant, 3 seeds
    python benchmarks/classifier_study.py --variants wave mixup --seeds 0
    python benchmarks/classifier_study.py --engine --seeds 0 1 2  # the aad LightningModule

``--engine`` trains :class:`aad.models.MachineIDClassifier` as ``compare`` does (DataModule
groups, :func:`aad.engine.fit.fit_model`, checkpoints + early stopping on ``val/loss``) once
per type and seed, and scores the test clips with each of its three scores (``nll``, ``knn``,
``mahalanobis``) from the same trained module.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from aad.data.audio import load_waveform
from aad.data.readers import read_manifest
from aad.data.splits import borrow_test_normals
from aad.features import FeatureExtractor, FeatureNormalizer
from aad.metrics import binary_metrics
from aad.models.classifier.augment import PseudoClasses, mixup, random_crops, sliding_crops
from aad.models.classifier.scoring import KNNScorer, MahalanobisScorer, class_nll, clip_mean
from aad.models.classifier.torch_model import (
    MachineClassifier,
    arcface_loss,
    recalibrate_batchnorm,
)

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SCORES = ("nll", "knn", "maha", "knn_crop", "maha_crop")
SAMPLE_RATE = 16000
CLIP_SAMPLES = 10 * SAMPLE_RATE


@dataclass
class Config:
    """Every knob of one variant."""

    n_mels: int = 64  # 128 measured: P1 mean AUC not better (nll .670 vs .687), 2x the CPU
    crop_s: float = 1.0
    hop_s: float = 0.5  # scoring hop between crops
    steps: int = 40  # optimiser steps; one epoch = ceil(clips / clips_per_batch) steps
    clips_per_batch: int = 8
    crops_per_clip: int = 12
    lr: float = 2e-3
    weight_decay: float = 1e-4
    embedding_dim: int = 128
    channels: tuple[int, int, int] = (32, 64, 128)
    waveform_branch: bool = False
    mixup: bool = False
    arcface_scale: float = 30.0
    arcface_margin: float = 0.5
    pseudo: str = "auto"  # auto: pseudo-classes when the type has one id; "ids+pseudo"; "off"
    knn_k: int = 1
    recalibrate_bn: bool = True  # re-estimate BatchNorm statistics on clean training crops

    def features(self) -> dict:
        return {
            "features": ["mel"],
            "mel": {"n_mels": self.n_mels},
            "stft": {"pad_mode": "reflect"},
        }


VARIANTS: dict[str, dict] = {
    "default": {},
    "crop2s": {"crop_s": 2.0, "hop_s": 1.0, "crops_per_clip": 8},
    "steps20": {"steps": 20},
    "steps80": {"steps": 80},
    "wave": {"waveform_branch": True},
    "mixup": {"mixup": True},
    "emb64": {"embedding_dim": 64},
    "emb256": {"embedding_dim": 256},
    "mels128": {"n_mels": 128},
    "margin0.2": {"arcface_margin": 0.2},
    "no_bn_recal": {"recalibrate_bn": False},
    "ids+pseudo": {"pseudo": "ids+pseudo", "crops_per_clip": 16},
}


@dataclass
class Group:
    name: str
    train: torch.Tensor  # (N, S) waveforms
    train_ids: list[str]
    test: torch.Tensor
    test_ids: list[str]
    labels: np.ndarray  # 1 anomaly / 0 normal


def load_groups(root: Path, borrow: bool) -> list[Group]:
    manifest = read_manifest(root)
    if borrow:
        manifest = borrow_test_normals(manifest, 0.5, seed=0)
    groups = []
    for machine_type in manifest.machine_types:
        of_type = manifest.filter(machine_type=machine_type)
        train = of_type.filter(split="train", label="normal").records
        test = of_type.filter(split="test", label=["normal", "anomaly"]).records

        def load(records: list) -> torch.Tensor:  # ToyCar clips are 11 s: keep the first 10 s
            return torch.stack(
                [load_waveform(r.path, SAMPLE_RATE, 0, CLIP_SAMPLES) for r in records]
            )

        groups.append(Group(
            machine_type, load(train), [r.machine_id for r in train], load(test),
            [r.machine_id for r in test], np.array([r.target for r in test]),
        ))  # fmt: skip
    return groups


class Pipeline:
    """Extractor + normaliser + model for one group: crops -> embeddings -> scores."""

    def __init__(self, cfg: Config, group: Group, seed: int) -> None:
        self.cfg, self.group = cfg, group
        self.crop = int(round(cfg.crop_s * SAMPLE_RATE))
        self.id_names = sorted(set(group.train_ids))
        single = len(self.id_names) == 1
        self.pseudo = cfg.pseudo == "ids+pseudo" or (cfg.pseudo == "auto" and single)
        self.augment = PseudoClasses()
        self.n_pseudo = self.augment.num_classes if self.pseudo else 1
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.extractor = FeatureExtractor(cfg.features())
        self.normalizer = FeatureNormalizer(cfg.n_mels)
        self.normalizer.update(self.extractor(group.train))
        self.normalizer.finalize()
        self.model = MachineClassifier(
            cfg.n_mels, len(self.id_names) * self.n_pseudo, cfg.embedding_dim, cfg.channels,
            cfg.waveform_branch, arcface_scale=cfg.arcface_scale,
            arcface_margin=cfg.arcface_margin,
        )  # fmt: skip

    def class_index(self, ids: list[str]) -> torch.Tensor:
        """Class of each clip as scored (pseudo-class 0 = as recorded); -1 unseen id."""
        index = {name: i for i, name in enumerate(self.id_names)}
        return torch.tensor([index[i] * self.n_pseudo if i in index else -1 for i in ids])

    def embed(self, crops: torch.Tensor) -> torch.Tensor:
        features = self.normalizer(self.extractor(crops))
        return self.model(features, crops if self.cfg.waveform_branch else None)

    def fit(self) -> dict[str, float]:
        cfg, group = self.cfg, self.group
        clip_class = self.class_index(group.train_ids)
        optimiser = torch.optim.AdamW(
            self.model.parameters(), cfg.lr, weight_decay=cfg.weight_decay
        )
        n_clips = len(group.train)
        steps_per_epoch = math.ceil(n_clips / cfg.clips_per_batch)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, cfg.lr, total_steps=cfg.steps)
        self.model.train()
        start, cpu_start, losses = time.perf_counter(), time.process_time(), []
        order = torch.empty(0, dtype=torch.long)
        for step in range(cfg.steps):
            if step % steps_per_epoch == 0:
                order = torch.randperm(n_clips, generator=self.generator)
            at = (step % steps_per_epoch) * cfg.clips_per_batch
            rows = order[at : at + cfg.clips_per_batch]
            if self.pseudo:
                crops, pseudo = self.augment(group.train[rows], self.crop, cfg.crops_per_clip,
                                             self.generator)  # fmt: skip
                labels = (clip_class[rows][:, None] + pseudo).flatten()
            else:
                crops = random_crops(group.train[rows], self.crop, cfg.crops_per_clip,
                                     self.generator)  # fmt: skip
                labels = clip_class[rows].repeat_interleave(cfg.crops_per_clip)
            crops = crops.flatten(0, 1)
            features = self.normalizer(self.extractor(crops))
            partner = lam = None
            if cfg.mixup:
                (features, crops), partner, lam = mixup([features, crops], self.generator)
            embedding = self.model(features, crops if cfg.waveform_branch else None)
            loss = arcface_loss(self.model, embedding, labels, partner, lam)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            losses.append(loss.item())
        if cfg.recalibrate_bn:
            hop = int(round(cfg.hop_s * SAMPLE_RATE))
            crops = sliding_crops(group.train, self.crop, hop).flatten(0, 1)
            batches = [(self.normalizer(self.extractor(c)), c if cfg.waveform_branch else None)
                       for c in crops.split(256)]  # fmt: skip
            recalibrate_batchnorm(self.model, batches)
        seconds = time.perf_counter() - start
        cpu_seconds = time.process_time() - cpu_start
        return {
            "train_s": seconds,
            "s_per_epoch": seconds / cfg.steps * steps_per_epoch,
            "cpu_s_per_epoch": cpu_seconds / cfg.steps * steps_per_epoch,
            "epochs": cfg.steps / steps_per_epoch,
            "first_loss": float(np.mean(losses[:5])),
            "last_loss": float(np.mean(losses[-5:])),
        }

    @torch.no_grad()
    def crop_outputs(self, waves: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Sliding crops of every clip -> ``(N, K, E)`` embeddings and ``(N, K, C)`` logits."""
        self.model.eval()
        hop = int(round(self.cfg.hop_s * SAMPLE_RATE))
        crops = sliding_crops(waves, self.crop, hop)
        n, k = crops.shape[:2]
        embeddings = torch.cat([self.embed(chunk) for chunk in crops.flatten(0, 1).split(256)])
        logits = self.model.logits(embeddings)
        return embeddings.view(n, k, -1), logits.view(n, k, -1)

    def score(self) -> dict[str, np.ndarray]:
        group = self.group
        train_emb, _ = self.crop_outputs(group.train)
        test_emb, test_logits = self.crop_outputs(group.test)
        train_cls = self.class_index(group.train_ids)
        test_cls = self.class_index(group.test_ids)
        n, k = test_emb.shape[:2]
        crop_cls = test_cls.repeat_interleave(k)
        clip_of_crop = torch.arange(n).repeat_interleave(k)
        nll = clip_mean(class_nll(test_logits.flatten(0, 1), crop_cls), clip_of_crop, n)

        def clip_embedding(emb: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(emb, dim=-1).mean(dim=1)

        knn = KNNScorer(self.cfg.knn_k).fit(clip_embedding(train_emb), train_cls)
        train_crop_cls = train_cls.repeat_interleave(train_emb.shape[1])
        knn_crops = KNNScorer(self.cfg.knn_k).fit(train_emb.flatten(0, 1), train_crop_cls)
        maha = MahalanobisScorer().fit(train_emb.flatten(0, 1), train_crop_cls)
        test_flat = test_emb.flatten(0, 1)
        scores = {
            "nll": nll,
            "knn": knn.score(clip_embedding(test_emb), test_cls),
            "maha": maha.score(test_emb.mean(dim=1), test_cls),
            "knn_crop": clip_mean(knn_crops.score(test_flat, crop_cls), clip_of_crop, n),
            "maha_crop": clip_mean(maha.score(test_flat, crop_cls), clip_of_crop, n),
        }
        return {name: value.numpy() for name, value in scores.items()}


def run_group(cfg: Config, group: Group, seed: int) -> dict:
    pipeline = Pipeline(cfg, group, seed)
    info = pipeline.fit()
    row = {"group": group.name, "seed": seed, **info}
    for name, values in pipeline.score().items():
        metrics = binary_metrics(group.labels, values)
        row[f"{name}_auc"], row[f"{name}_pauc"] = metrics["auc"], metrics["pauc"]
    return row


def table(rows: list[dict], title: str) -> str:
    """Markdown: per group (mean over seeds) and the mean over groups, AUC/pAUC per score."""
    groups = list(dict.fromkeys(r["group"] for r in rows))
    scores = [s for s in SCORES if f"{s}_auc" in rows[0]]
    head = "| group | " + " | ".join(f"{s} AUC / pAUC" for s in scores) + " | s/epoch wall / CPU |"
    lines = [f"### {title}", "", head, "|---" * (len(scores) + 2) + "|"]

    def cells(selected: list[dict]) -> str:
        parts = []
        for s in scores:
            auc = np.mean([r[f"{s}_auc"] for r in selected])
            pauc = np.mean([r[f"{s}_pauc"] for r in selected])
            parts.append(f"{auc:.3f} / {pauc:.3f}")
        wall = np.mean([r["s_per_epoch"] for r in selected])
        cpu = np.mean([r["cpu_s_per_epoch"] for r in selected])
        return " | ".join(parts) + f" | {wall:.2f} / {cpu:.2f} |"

    for g in groups:
        lines.append(f"| {g} | " + cells([r for r in rows if r["group"] == g]))
    if len(groups) > 1:
        lines.append("| **mean** | " + cells(rows))
    seeds = sorted({r["seed"] for r in rows})
    if len(seeds) > 1 and len(groups) > 1:
        for s in scores:  # spread of the over-group mean across seeds
            per_seed = [np.mean([r[f"{s}_auc"] for r in rows if r["seed"] == k]) for k in seeds]
            spread = f"{np.mean(per_seed):.3f} +- {np.std(per_seed, ddof=1):.3f} (sd)"
            lines.append(f"\n{s}: mean AUC per seed {np.round(per_seed, 3).tolist()}, {spread}")
    return "\n".join(lines)


def engine_rows(root: Path, borrow: bool, seeds: list[int], max_epochs: int) -> list[dict]:
    """Rows like :func:`run_group`'s from the Lightning module trained by the engine."""
    import tempfile

    from lightning.pytorch import seed_everything
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from aad.data import MachineSoundDataModule
    from aad.engine.fit import fit_model, make_trainer
    from aad.models import MachineIDClassifier
    from aad.scoring import score_loader

    data = MachineSoundDataModule(root=str(root), train_from_test=0.5 if borrow else 0.0)
    rows = []
    for seed in seeds:
        for group in data.groups():
            seed_everything(seed, workers=True, verbose=False)
            bound = data.for_group(group)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = make_trainer({
                    "max_epochs": max_epochs, "deterministic": True, "logger": False,
                    "num_sanity_val_steps": 0, "enable_progress_bar": False,
                    "enable_model_summary": False, "default_root_dir": tmp,
                    "callbacks": [ModelCheckpoint(monitor="val/loss", save_last=True),
                                  EarlyStopping(monitor="val/loss", patience=5)],
                })  # fmt: skip
                start, cpu_start = time.perf_counter(), time.process_time()
                module = fit_model(MachineIDClassifier(), bound, trainer)
                seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
            epochs = trainer.current_epoch
            row = {"group": group.label, "seed": seed, "train_s": seconds, "epochs": epochs,
                   "s_per_epoch": seconds / max(epochs, 1),
                   "cpu_s_per_epoch": cpu / max(epochs, 1)}  # fmt: skip
            for name, column in (("nll", "nll"), ("knn", "knn"), ("mahalanobis", "maha")):
                module.score_name = name
                scored = score_loader(module, bound.loader("test"))
                metrics = binary_metrics(scored.target, scored.score)
                row[f"{column}_auc"], row[f"{column}_pauc"] = metrics["auc"], metrics["pauc"]
            rows.append(row)
            print(group.label, seed, {k: round(v, 3) for k, v in row.items()
                                      if k.endswith("_auc")}, flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="+", default=["default"], choices=sorted(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data", choices=["p1", "slider", "both"], default="both")
    parser.add_argument("--root", type=Path, default=SHARED / "dcase2020-mini")
    parser.add_argument("--slider-root", type=Path, default=SHARED / "dcase2020-slider-id00")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=None, help="write rows as JSON here")
    parser.add_argument("--engine", action="store_true", help="the aad LightningModule")
    parser.add_argument("--max-epochs", type=int, default=40, help="--engine: Trainer epochs")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.engine:
        sets = {"p1": [(args.root, True)], "slider": [(args.slider_root, False)],
                "both": [(args.root, True), (args.slider_root, False)]}[args.data]  # fmt: skip
        rows = []
        for root, borrow in sets:
            start = time.perf_counter()
            found = engine_rows(root, borrow, args.seeds, args.max_epochs)
            elapsed = time.perf_counter() - start
            print(table(found, f"engine on {root.name}, seeds {args.seeds} ({elapsed:.0f} s)"))
            rows += [{"data": root.name, **r} for r in found]
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"rows": rows}, indent=1))
        return
    datasets = []
    if args.data in ("p1", "both"):
        datasets.append(("P1 dcase2020-mini", load_groups(args.root, borrow=True)))
    if args.data in ("slider", "both"):
        datasets.append(("dcase2020-slider-id00", load_groups(args.slider_root, borrow=False)))
    all_rows = []
    for variant in args.variants:
        cfg = replace(Config(), **VARIANTS[variant])
        for title, groups in datasets:
            start = time.perf_counter()
            rows = [run_group(cfg, g, seed) for seed in args.seeds for g in groups]
            elapsed = time.perf_counter() - start
            print(table(rows, f"{variant} on {title}, seeds {args.seeds} ({elapsed:.0f} s)"))
            print(flush=True)
            all_rows += [{"variant": variant, "data": title, **r} for r in rows]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        configs = {v: asdict(replace(Config(), **VARIANTS[v])) for v in args.variants}
        args.out.write_text(json.dumps({"configs": configs, "rows": all_rows}, indent=1))


if __name__ == "__main__":
    main()
