"""Seconds per detector to fit, score and save + load n embeddings (random data, dim ~200).

    python benchmarks/detectors.py --sizes 1000 10000 100000 --dim 200 --budget 300

Fits on ``n`` normal rows and scores ``n`` fresh rows; ``save+load s`` writes the
pickle-free ``.npz`` and reads it back (loading re-fits and verifies the training scores).
A cell whose projected time (from the previous size and the method's complexity) exceeds
``--budget`` seconds is skipped and marked, so the script finishes on a shared machine.
Peak RSS is reported. ``pyod`` (ECOD) runs when PyOD is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from aad.detectors import DETECTORS, BaseDetector, build_detector

# rough exponent of n in fit + score time, to project the next size
COMPLEXITY = {
    "isolation_forest": 1.0,
    "ocsvm": 1.0,  # capped at max_train_samples=10,000, scoring linear in n
    "lof": 2.0,
    "knn": 2.0,
    "mahalanobis": 1.0,
    "gmm": 1.0,
    "pyod": 1.0,  # ECOD: one sort per feature
}
DEFAULT_METHODS = [
    n for n in sorted(DETECTORS) if n != "pyod" or importlib.util.find_spec("pyod") is not None
]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--budget", type=float, default=300.0, help="max projected s per cell")
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(args.dim, args.dim)) / np.sqrt(args.dim)
    print("| method | n | fit s | score s | save+load s | peak RSS so far MB |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="aad-bench-") as tmp:
        for name in args.methods:
            run_method(name, args, rng, mixing, Path(tmp))


def run_method(
    name: str, args: argparse.Namespace, rng: np.random.Generator, mixing: np.ndarray, folder: Path
) -> None:
    """One table row per size for detector ``name``."""
    previous: tuple[int, float] | None = None
    for n in args.sizes:
        if previous is not None:
            projected = previous[1] * (n / previous[0]) ** COMPLEXITY.get(name, 2.0)
            if projected > args.budget:
                print(f"| {name} | {n} | skipped (projected {projected:.0f} s) | | | |")
                continue
        train = (rng.normal(size=(n, args.dim)) @ mixing).astype(np.float32)
        test = (rng.normal(size=(n, args.dim)) @ mixing).astype(np.float32)
        detector = build_detector(name)
        start = time.perf_counter()
        detector.fit(train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        scores = detector.decision_function(test)
        score_s = time.perf_counter() - start
        assert np.all(np.isfinite(scores))
        start = time.perf_counter()
        loaded = BaseDetector.load(detector.save(folder / f"{name}.npz"))
        io_s = time.perf_counter() - start
        assert loaded.threshold_ == detector.threshold_
        previous = (n, fit_s + score_s)
        print(
            f"| {detector.describe()} | {n} | {fit_s:.2f} | {score_s:.2f} | {io_s:.2f} "
            f"| {peak_rss_mb():.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
