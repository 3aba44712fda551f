"""Seconds per detector to fit and to score n embeddings (random data, dim ~200).

    python benchmarks/detectors.py --sizes 1000 10000 100000 --dim 200 --budget 300

Fits on ``n`` normal rows and scores ``n`` fresh rows. A cell whose projected time
(from the previous size and the method's complexity) exceeds ``--budget`` seconds is
skipped and marked, so the script finishes on a shared machine. Peak RSS is reported.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np

from aad.detectors import DETECTORS, build_detector

# rough exponent of n in fit + score time, to project the next size
COMPLEXITY = {
    "isolation_forest": 1.0,
    "ocsvm": 1.0,  # capped at max_train_samples=10,000, scoring linear in n
    "lof": 2.0,
    "knn": 2.0,
    "mahalanobis": 1.0,
    "gmm": 1.0,
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--dim", type=int, default=200)
    parser.add_argument("--budget", type=float, default=300.0, help="max projected s per cell")
    parser.add_argument("--methods", nargs="+", default=sorted(DETECTORS))
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(args.dim, args.dim)) / np.sqrt(args.dim)
    print("| method | n | fit s | score s | peak RSS so far MB |\n|---|---|---|---|---|")
    for name in args.methods:
        previous: tuple[int, float] | None = None
        for n in args.sizes:
            if previous is not None:
                projected = previous[1] * (n / previous[0]) ** COMPLEXITY.get(name, 2.0)
                if projected > args.budget:
                    print(f"| {name} | {n} | skipped (projected {projected:.0f} s) | | |")
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
            previous = (n, fit_s + score_s)
            print(
                f"| {name} | {n} | {fit_s:.2f} | {score_s:.2f} | {peak_rss_mb():.0f} |", flush=True
            )


if __name__ == "__main__":
    main()
