"""What the machine-id classifier's embedding keeps: per-id Mahalanobis on the trained
network's crop embeddings against the same on its own input (the crops' normalised log-mel).

For each machine type of a finished ``python -m aad.compare`` run with a ``classifier``
method, load its best checkpoint, cut every clip into the module's sliding crops and score
each test clip by the squared Mahalanobis distance of its mean crop vector to its id's
training crops (:class:`aad.models.classifier.scoring.MahalanobisScorer`, Ledoit-Wolf; an id
without training clips: the nearest id), for these crop vectors:

- ``embedding``: the network's embedding (the module's own ``mahalanobis`` score);
- ``logmel_mean`` / ``logmel_mean_std``: the crop's normalised log-mel, mean (and standard
  deviation) over its frames: the network's input, no network;
- ``joint``: ``embedding`` and ``logmel_mean_std`` concatenated (columns standardised on the
  training crops).

    python -m aad.compare --config CLASSIFIER_ONLY.yaml --out results/cls --data.root DIR
    python benchmarks/classifier_inputs.py --runs results/cls/runs --data-root DIR

Splits are compare's: the folder's own train split, else (test-only folders such as
``dcase2020-mini``) ``borrow_test_normals(0.5, seed=0)``, protocol P1.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from aad.checkpoints import load_module, recorded_best
from aad.data.audio import load_waveform
from aad.data.readers import read_manifest
from aad.data.splits import borrow_test_normals
from aad.metrics import binary_metrics
from aad.models.classifier.augment import sliding_crops
from aad.models.classifier.scoring import MahalanobisScorer

VECTORS = ("embedding", "logmel_mean", "logmel_mean_std", "joint")


@torch.no_grad()
def crop_vectors(module, path: Path) -> dict[str, torch.Tensor]:
    """Every crop vector of one clip, ``{name: (K, D)}`` (float64)."""
    waveform = load_waveform(path, module.sample_rate)
    crops = sliding_crops(waveform[None], module.crop_samples, module.hop_samples)[0]
    features = module.prepare_features(crops)
    stats = torch.cat([features.mean(dim=1), features.std(dim=1)], dim=1)
    return {
        "embedding": module._embed(crops)[0].double(),
        "logmel_mean": features.mean(dim=1).double(),
        "logmel_mean_std": stats.double(),
    }


def type_aucs(module, train: list, test: list, root: Path) -> dict[str, float]:
    """AUC of each crop vector's per-id Mahalanobis score on one machine type."""
    names = list(module.hparams.class_names)
    train_vectors = [crop_vectors(module, root / r.path) for r in train]
    test_vectors = [crop_vectors(module, root / r.path) for r in test]
    for vectors in (*train_vectors, *test_vectors):  # joint: standardised below
        vectors["joint"] = torch.cat([vectors["embedding"], vectors["logmel_mean_std"]], dim=1)
    stacked = torch.cat([v["joint"] for v in train_vectors])
    centre, scale = stacked.mean(dim=0), stacked.std(dim=0) + 1e-9
    for vectors in (*train_vectors, *test_vectors):
        vectors["joint"] = (vectors["joint"] - centre) / scale
    counts = torch.tensor([len(v["embedding"]) for v in train_vectors])
    classes = torch.tensor([names.index(r.machine_id) for r in train]).repeat_interleave(counts)
    test_classes = torch.tensor([names.index(r.machine_id) if r.machine_id in names else -1
                                 for r in test])  # fmt: skip
    labels = np.array([r.label == "anomaly" for r in test], dtype=int)
    aucs = {}
    for name in VECTORS:
        scorer = MahalanobisScorer().fit(torch.cat([v[name] for v in train_vectors]), classes)
        means = torch.stack([v[name].mean(dim=0) for v in test_vectors])
        aucs[name] = binary_metrics(labels, scorer.score(means, test_classes).numpy())["auc"]
    return aucs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="compare's <out>/runs folder")
    parser.add_argument("--data-root", type=Path, required=True)
    parser.add_argument("--layout", default="dcase2020")
    args = parser.parse_args()
    torch.set_num_threads(1)
    manifest = read_manifest(args.data_root, args.layout)
    if not any(r.split == "train" for r in manifest):
        manifest = borrow_test_normals(manifest, 0.5, seed=0)
    rows = {}
    for folder in sorted((args.runs / "classifier").iterdir()):
        best = recorded_best(folder / "lightning_logs" / "version_0" / "checkpoints")
        if best is None:
            print(f"{folder.name}: no checkpoint, skipped")
            continue
        module, _ = load_module(best)
        records = [r for r in manifest if r.machine_type == folder.name]
        train = [r for r in records if r.split == "train" and r.label == "normal"]
        test = [r for r in records if r.split == "test" and r.label in ("normal", "anomaly")]
        rows[folder.name] = type_aucs(module, train, test, args.data_root)
    print("| type | " + " | ".join(VECTORS) + " |")
    print("|---" * (len(VECTORS) + 1) + "|")
    for name, aucs in [*rows.items(), ("mean", None)]:
        values = aucs or {v: float(np.mean([r[v] for r in rows.values()])) for v in VECTORS}
        print(f"| {name} | " + " | ".join(f"{values[v]:.3f}" for v in VECTORS) + " |")


if __name__ == "__main__":
    main()
