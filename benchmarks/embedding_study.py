"""Which pooled clip embedding and detector work best on the real clips (not synthetic ones).

Protocol P1 on ``dcase2020-mini`` (per machine type, ids pooled: half of the normal test clips,
``borrow_test_normals(..., 0.5, seed)``, train; the rest and every anomaly test; AUC and pAUC
(max FPR 0.1) per type, mean over the 6 types), also averaged over split seeds 0..N-1, and the
``dcase2020-slider-id00`` set (75 training clips, 5 + 4 test clips). Embeddings:
``FeatureExtractor`` + ``clip_embedding`` on the first 10 s at 16 kHz, standardised with a
``StandardScaler`` fitted on the training rows; detectors are plain scikit-learn / numpy. The
peer is PyOD's ``EmbeddingOD.for_audio`` (fast and balanced) on the same splits. Example::

    python benchmarks/embedding_study.py                    # full study, ~5-8 min on 2 cores
    python benchmarks/embedding_study.py --split-seeds 3 --bootstrap 200   # quicker
"""

import argparse
import hashlib
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from sklearn.covariance import LedoitWolf
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor, NearestNeighbors
from sklearn.preprocessing import StandardScaler
from sklearn.svm import OneClassSVM

from aad.data.audio import load_waveform
from aad.data.manifest import Manifest
from aad.data.readers import read_manifest
from aad.data.splits import borrow_test_normals
from aad.features import FeatureConfig, FeatureExtractor, clip_embedding

REPO = Path(__file__).resolve().parents[1]
SR, SAMPLES = 16000, 160000
DESCRIPTORS = ("rms", "centroid", "bandwidth", "rolloff", "flatness", "contrast", "zcr")
ALL_PARTS = ("mel", "mfcc", "chroma", "cens", *DESCRIPTORS)
STATS = ("mean", "std", "max", "min", "median")
STFTS = {"512": (512, 256), "1024": (1024, 512), "2048": (2048, 512), "4096": (4096, 512)}
PART_SETS = {
    "aad-v1 (mel+mfcc+cens)": ("mel", "mfcc", "cens"),
    "peer parts (mfcc+chroma+cent+bw+roll+zcr+rms)": (
        "mfcc", "chroma", "centroid", "bandwidth", "rolloff", "zcr", "rms"),
    "peer parts + flatness + contrast": ("mfcc", "chroma", *DESCRIPTORS),
    "mfcc + descriptors": ("mfcc", *DESCRIPTORS),
    "mfcc + cent+bw+roll+zcr+rms": ("mfcc", "centroid", "bandwidth", "rolloff", "zcr", "rms"),
    "mel + descriptors": ("mel", *DESCRIPTORS),
    "descriptors only": DESCRIPTORS,
    "mfcc only": ("mfcc",),
    "mel only": ("mel",),
    "all parts": ALL_PARTS,
}  # fmt: skip
STAT_SETS = {"mean+std": ("mean", "std"), "mean": ("mean",), "mean+std+max+min": STATS[:4]}


def study_config(stft: str) -> FeatureConfig:
    """Every part on one STFT (flatness in dB: the linear ratio spans decades)."""
    n_fft, hop = STFTS[stft]
    return FeatureConfig.from_dict(
        {"features": list(ALL_PARTS), "stft": {"n_fft": n_fft, "hop_length": hop},
         "flatness": {"log": "db"}}
    )  # fmt: skip


Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (train rows, test rows) -> scores


def _negated(make: Callable[[int], object], method: str = "score_samples") -> Scorer:
    """scikit-learn's "higher = more normal" flipped once: higher = more anomalous."""
    return lambda a, b: -getattr(make(len(a)).fit(a), method)(b)


def _knn(k: int) -> Scorer:
    def score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        neighbours = NearestNeighbors(n_neighbors=min(k, len(train) - 1)).fit(train)
        return neighbours.kneighbors(test)[0].mean(axis=1)

    return score


def gmm1(train: np.ndarray, test: np.ndarray, reg_covar: float = 1e-3) -> np.ndarray:
    """``-GaussianMixture(1, covariance_type="full", reg_covar).fit(train).score_samples(test)``
    in closed form (one component: EM stops at the sample mean and biased covariance + reg)."""
    mean = train.mean(axis=0)
    cov = (train - mean).T @ (train - mean) / len(train) + reg_covar * np.eye(train.shape[1])
    chol = np.linalg.cholesky(cov)
    z = scipy.linalg.solve_triangular(chol, (test - mean).T, lower=True)
    log_det = 2.0 * np.log(np.diag(chol)).sum()
    return 0.5 * ((z**2).sum(axis=0) + log_det + train.shape[1] * np.log(2 * np.pi))


DETECTORS: dict[str, tuple[Scorer, str]] = {
    "iforest": (_negated(lambda n: IsolationForest(n_estimators=200, random_state=0)),
                "IsolationForest(200 trees, seed 0)"),
    "knn1": (_knn(1), "distance to the nearest training clip"),
    "knn5": (_knn(5), "kNN mean distance, k = min(5, n_train - 1)"),
    "lof": (_negated(lambda n: LocalOutlierFactor(n_neighbors=min(20, n - 1), novelty=True)),
            "LOF(novelty=True, n_neighbors=min(20, n_train - 1))"),
    "ocsvm": (_negated(lambda n: OneClassSVM(gamma="scale", nu=0.5), "decision_function"),
              "OneClassSVM(rbf, gamma='scale', nu=0.5)"),
    "mahalanobis": (lambda a, b: LedoitWolf().fit(a).mahalanobis(b),
                    "squared Mahalanobis distance, LedoitWolf covariance"),
    "gmm1": (gmm1, "GaussianMixture(1, full, reg_covar 1e-3), closed form"),
    "gmm1-diag": (_negated(lambda n: GaussianMixture(1, covariance_type="diag", random_state=0)),
                  "GaussianMixture(1, diag)"),
}  # fmt: skip


def peer_scorer(quality: str, random_state: int = 0) -> Scorer:
    """PyOD ``EmbeddingOD.for_audio(quality)`` on precomputed encoder rows (its own pipeline:
    nan_to_num, StandardScaler, preset detector). PyOD's ``KNN(n_neighbors=5)`` cannot fit
    5 or fewer clips: there ``n_neighbors = n_train - 1``."""
    from pyod.models.embedding import EmbeddingOD
    from pyod.models.knn import KNN
    from pyod.utils.encoders import BaseEncoder

    class Rows(BaseEncoder):  # the rows are already PyOD's audio features
        def encode(self, X, batch_size=32, show_progress=True):  # noqa: ANN001, ANN201
            return np.asarray(X)

    def score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        extra = {"detector": KNN(n_neighbors=len(train) - 1)} if (
            quality == "balanced" and len(train) <= 5) else {}  # fmt: skip
        model = EmbeddingOD.for_audio(quality, encoder=Rows(), random_state=random_state, **extra)
        return model.fit(train).decision_function(test)

    return score


Group = tuple[str, np.ndarray, np.ndarray, np.ndarray]  # type, train rows, test rows, labels


def load_tasks(root: Path, split_seeds: int) -> tuple[list[str], dict[str, list[Group]]]:
    """Every clip path once, and the groups of each task: ``P1 seed s`` and ``slider-id00``."""
    mini = read_manifest(root / "dcase2020-mini")
    slider = read_manifest(root / "dcase2020-slider-id00")
    paths = sorted({r.path for r in mini} | {r.path for r in slider})
    index = {p: i for i, p in enumerate(paths)}

    def groups(manifest: Manifest) -> list[Group]:
        out = []
        for machine_type in manifest.machine_types:
            rows = [r for r in manifest if r.machine_type == machine_type]
            train = np.array([index[r.path] for r in rows if r.split == "train"])
            test = [r for r in rows if r.split == "test"]
            labels = np.array([r.label == "anomaly" for r in test], dtype=int)
            out.append((machine_type, train, np.array([index[r.path] for r in test]), labels))
        return out

    tasks = {f"P1 seed {s}": groups(borrow_test_normals(mini, 0.5, seed=s))
             for s in range(split_seeds)}  # fmt: skip
    tasks["slider-id00"] = groups(slider)
    return paths, tasks


def pooled_blocks(paths: list[str], cache: Path, stfts: list[str]) -> dict[str, dict]:
    """``{stft: {"part:stat": (N, D)}}``, computed once per STFT setting (cached)."""
    key = hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]
    out, waves = {}, None
    for stft in stfts:
        path = cache / f"blocks_{stft}_{key}_{study_config(stft).signature()}.npz"
        if not path.exists():
            if waves is None:  # first 10 s of every clip (ToyCar's are 11 s)
                waves = torch.stack([load_waveform(p, SR, 0, SAMPLES) for p in paths])
            extractor = FeatureExtractor(study_config(stft)).eval()
            rows: dict[str, list[np.ndarray]] = {}
            with torch.inference_mode():
                for chunk in waves.split(16):
                    for name, part in extractor.forward_parts(chunk).items():
                        for stat in STATS:
                            block = clip_embedding({name: part}, stats=(stat,)).numpy()
                            rows.setdefault(f"{name}:{stat}", []).append(block)
            cache.mkdir(parents=True, exist_ok=True)
            np.savez(path, **{k: np.concatenate(v) for k, v in rows.items()})
        with np.load(path) as data:
            out[stft] = {k: data[k] for k in data.files}
    return out


def embedding(blocks: dict[str, np.ndarray], parts: tuple[str, ...], stats: tuple[str, ...]):
    """Pooled statistics of ``parts`` in clip_embedding's order (part by part, stat by stat)."""
    return np.concatenate([blocks[f"{p}:{s}"] for p in parts for s in stats], axis=1)


def peer_features(paths: list[str], cache: Path) -> np.ndarray:
    """PyOD's 74 audio features of every clip (its own loader: whole clip at 22.05 kHz)."""
    from pyod.utils.encoders.audio import AudioFeatureEncoder

    path = cache / f"pyod_audio_{hashlib.sha256(''.join(paths).encode()).hexdigest()[:12]}.npy"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        np.save(path, AudioFeatureEncoder().encode(paths, show_progress=False))
    return np.load(path)


Results = dict[str, list[tuple[str, np.ndarray, np.ndarray]]]  # task -> (type, labels, scores)


def run(X: np.ndarray, tasks: dict[str, list[Group]], scorer: Scorer, scale: bool = True):
    """Scores of every group of every task (``StandardScaler`` fitted on the training rows)."""
    results: Results = {}
    for task, groups in tasks.items():
        results[task] = []
        for machine_type, train, test, labels in groups:
            a, b = X[train], X[test]
            if scale:
                scaler = StandardScaler().fit(a)
                a, b = scaler.transform(a), scaler.transform(b)
            results[task].append((machine_type, labels, np.asarray(scorer(a, b), dtype=float)))
    return summarise(results), results


def summarise(results: Results) -> dict:
    auc = {t: [roc_auc_score(y, s) for _, y, s in r] for t, r in results.items()}
    pauc = {t: [roc_auc_score(y, s, max_fpr=0.1) for _, y, s in r] for t, r in results.items()}
    types = [m for m, *_ in results["P1 seed 0"]]
    per_split = np.array([v for t, v in auc.items() if t.startswith("P1")])  # (seeds, types)
    return {
        "split_type_auc": per_split,
        "p1_auc": np.mean(auc["P1 seed 0"]), "p1_pauc": np.mean(pauc["P1 seed 0"]),
        "seeds_auc": per_split.mean(), "seeds_sd": per_split.mean(axis=1).std(),
        "slider_auc": auc["slider-id00"][0], "slider_pauc": pauc["slider-id00"][0],
        "types": dict(zip(types, zip(auc["P1 seed 0"], pauc["P1 seed 0"], strict=True),
                          strict=True)),
    }  # fmt: skip


def bootstrap_sd(groups: list[tuple[str, np.ndarray, np.ndarray]], draws: int) -> float:
    """Sd of the mean-over-types AUC when each type's normal and anomalous test clips are
    resampled with replacement (stratified)."""
    rng = np.random.default_rng(0)
    means = []
    for _ in range(draws):
        aucs = []
        for _, labels, scores in groups:
            pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
            pick = np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)])
            aucs.append(roc_auc_score(labels[pick], scores[pick]))
        means.append(np.mean(aucs))
    return float(np.std(means))


def label(key: tuple[str, str, str, str]) -> str:
    return key[0] if key[2] == "-" else f"{key[0]}, {key[1]}, n_fft {key[2]}"


def table(title: str, columns: list[str], lines: list[str]) -> None:
    print(f"\n## {title}\n\n| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    print("\n".join(lines))


def report(rows: dict, keys: list, draws: int, seeds: int) -> None:
    """Headline table (seed 0 and all split seeds), then per type: seed 0 AUC / pAUC with a
    bootstrap sd, and AUC averaged over split seeds with (seed, type) wins against the peer."""
    peer = rows[PEER_FAST][0]
    types = list(peer["types"])
    lines = []
    for key in keys:
        s = rows[key][0]
        lines.append(f"| {label(key)} | {key[3]} | {s['p1_auc']:.3f} | {s['p1_pauc']:.3f} | "
                     f"{s['seeds_auc']:.3f} ± {s['seeds_sd']:.3f} | {s['slider_auc']:.3f} | "
                     f"{s['slider_pauc']:.3f} |")  # fmt: skip
    columns = ["embedding", "detector", "P1 AUC", "P1 pAUC", f"P1 AUC, split seeds 0-{seeds - 1}"
               " (mean ± sd)", "slider AUC", "slider pAUC"]  # fmt: skip
    table("Headline: P1 (split seed 0, mean over 6 types), P1 over split seeds, slider-id00",
          columns, lines)  # fmt: skip
    seed0, averaged = [], []
    for key in keys:
        s, results = rows[key]
        cells = " | ".join(f"{a:.3f} / {p:.3f}" for a, p in s["types"].values())
        spread = bootstrap_sd(results["P1 seed 0"], draws)
        seed0.append(f"| {label(key)} | {key[3]} | {cells} | {s['p1_auc']:.3f} / "
                     f"{s['p1_pauc']:.3f} | {spread:.3f} |")  # fmt: skip
        means = " | ".join(f"{m:.3f}" for m in s["split_type_auc"].mean(axis=0))
        wins = s["split_type_auc"] >= peer["split_type_auc"]
        averaged.append(f"| {label(key)} | {key[3]} | {means} | {wins.sum()}/{wins.size} |")
    table("P1 split seed 0 per type: AUC / pAUC; mean; stratified bootstrap sd of the mean AUC",
          ["embedding", "detector", *types, "mean", "boot. sd"], seed0)  # fmt: skip
    table("P1 AUC per type averaged over split seeds; (seed, type) cells >= PyOD fast",
          ["embedding", "detector", *types, ">= peer"], averaged)  # fmt: skip


PEER_FAST = ("PyOD for_audio fast", "74 features", "-", "IForest (100 trees, seed 0)")
PEER_BALANCED = ("PyOD for_audio balanced", "74 features", "-", "KNN (k = min(5, n_train - 1))")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--cache", type=Path, default=REPO / ".cache" / "embedding_study")
    parser.add_argument("--split-seeds", type=int, default=5, help="P1 split seeds 0..N-1")
    parser.add_argument("--stfts", nargs="+", default=["1024", "2048"], choices=list(STFTS))
    parser.add_argument("--bootstrap", type=int, default=200, help="draws for the AUC spread")
    parser.add_argument("--top", type=int, default=12, help="leading rows in the tables")
    parser.add_argument("--verify-peer", action="store_true", help="EmbeddingOD on WAV paths")
    args = parser.parse_args()
    start = time.perf_counter()
    paths, tasks = load_tasks(args.data_root, args.split_seeds)
    blocks = pooled_blocks(paths, args.cache, list(STFTS))
    peer = peer_features(paths, args.cache)
    print(f"{len(paths)} clips, features ready in {time.perf_counter() - start:.0f} s")

    rows = {PEER_FAST: run(peer, tasks, peer_scorer("fast"), scale=False)}
    rows[PEER_BALANCED] = run(peer, tasks, peer_scorer("balanced"), scale=False)
    for stft in args.stfts:  # stage 1: every part set and detector, mean+std
        for name, parts in PART_SETS.items():
            X = embedding(blocks[stft], parts, STAT_SETS["mean+std"])
            for detector, (scorer, _) in DETECTORS.items():
                rows[(name, "mean+std", stft, detector)] = run(X, tasks, scorer)

    def ranked() -> list:
        return sorted((k for k in rows if k[2] != "-"), key=lambda k: -rows[k][0]["seeds_auc"])

    for name, stft in list(dict.fromkeys((k[0], k[2]) for k in ranked()))[:3]:
        for stats in ("mean", "mean+std+max+min"):  # stage 2: other statistics, leading sets
            X = embedding(blocks[stft], PART_SETS[name], STAT_SETS[stats])
            for detector, (scorer, _) in DETECTORS.items():
                if detector != "iforest":  # the slowest; stage 1 shows where it stands
                    rows[(name, stats, stft, detector)] = run(X, tasks, scorer)
    leader = ranked()[0]
    name, stats, stft, detector = leader
    scorer, parts = DETECTORS[detector][0], PART_SETS[name]
    for other in STFTS:  # stage 3: the leader at every STFT size, without each part, each alone
        if (name, stats, other, detector) not in rows:
            X = embedding(blocks[other], parts, STAT_SETS[stats])
            rows[(name, stats, other, detector)] = run(X, tasks, scorer)
    for part in parts if len(parts) > 1 else ():
        for tag, subset in ((f"without {part}", [p for p in parts if p != part]),
                            (f"{part} only", [part])):  # fmt: skip
            X = embedding(blocks[stft], tuple(subset), STAT_SETS[stats])
            rows[(f"{name}: {tag}", stats, stft, detector)] = run(X, tasks, scorer)
    print(f"{len(rows)} rows scored in {time.perf_counter() - start:.0f} s")

    main_rows = [k for k in ranked() if k[0] in PART_SETS]
    leading_sets = list(dict.fromkeys(k for k in main_rows if k[0] != name))  # other part sets
    keys = [PEER_FAST, PEER_BALANCED, *main_rows[: args.top]]
    keys += [next(k for k in leading_sets if k[0] == n) for n in PART_SETS if n != name]
    keys += [("aad-v1 (mel+mfcc+cens)", "mean+std", "1024", d) for d in ("mahalanobis", "iforest")]
    report(rows, list(dict.fromkeys(keys)), args.bootstrap, args.split_seeds)
    sensitivity = [(name, stats, other, detector) for other in STFTS]
    ablation = [k for k in rows if k[0].startswith(f"{name}: ")]
    table(f"Leader ({label(leader)}, {detector}) by STFT size, and without / with one part",
          ["embedding", "detector", "P1 AUC", "P1 over split seeds", "slider AUC"],
          [f"| {label(k)} | {k[3]} | {rows[k][0]['p1_auc']:.3f} | {rows[k][0]['seeds_auc']:.3f}"
           f" | {rows[k][0]['slider_auc']:.3f} |" for k in sensitivity + ablation])  # fmt: skip
    lines = []
    for detector_name, (_, note) in DETECTORS.items():
        p1 = [rows[k][0]["seeds_auc"] for k in rows if k[3] == detector_name and k[1] == "mean+std"
              and k[0] in PART_SETS and k[2] in args.stfts]  # fmt: skip
        lines.append(f"| {detector_name} | {note} | {np.mean(p1):.3f} | {np.max(p1):.3f} |")
    table("Each detector over the stage-1 embeddings: P1 AUC over split seeds",
          ["detector", "settings", "mean", "best"], lines)  # fmt: skip

    seed0 = {"P1 seed 0": tasks["P1 seed 0"], "slider-id00": tasks["slider-id00"]}
    spread = [run(peer, seed0, peer_scorer("fast", seed), scale=False)[0]["p1_auc"]
              for seed in range(10)]  # fmt: skip
    print(f"\nPyOD fast on P1 split seed 0, IForest seeds 0-9: mean AUC {np.mean(spread):.3f} "
          f"(min {np.min(spread):.3f}, max {np.max(spread):.3f})")  # fmt: skip
    if args.verify_peer:
        from pyod.models.embedding import EmbeddingOD

        worst = 0.0
        for _, train, test, _ in tasks["P1 seed 0"]:
            model = EmbeddingOD.for_audio("fast", random_state=0).fit([paths[i] for i in train])
            direct = model.decision_function([paths[i] for i in test])
            worst = max(worst, np.abs(direct - peer_scorer("fast")(peer[train], peer[test])).max())
        print(f"EmbeddingOD on the WAV paths vs on cached features: max |score diff| {worst:.2e}")
    print(f"\ntotal {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    warnings.filterwarnings("ignore", category=UserWarning)
    main()
