"""Deploy footprint: latency of one 1 s hop (a 10 s window scored) on ONE CPU core, file size
and peak memory of the exported LSTM-AE and DCASE AE, ONNX (onnxruntime) and TorchScript.

Goal: a 10 s window scored in under 20 ms on one core. Each exported file is measured in a
fresh process pinned to one core (``sched_setaffinity``, ``torch.set_num_threads(1)``,
onnxruntime ``intra_op_num_threads=1``) that imports only what the runtime needs (the ONNX
process never imports torch), so its peak RSS (``VmHWM``) is what a listening box pays.
PyTorch eager (``AnomalyModule.score``, one thread) is the baseline.

    python benchmarks/deploy.py                      # both models, both formats (~2-3 min)
    python benchmarks/deploy.py --ckpt best.ckpt     # a trained checkpoint instead
    python benchmarks/deploy.py --repeats 300 --out results/deploy.json

Models without ``--ckpt`` have their default architecture and features with the normaliser
and threshold fitted on synthetic fan clips (latency does not depend on trained weights).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

GOAL_MS = 20.0
WINDOW_S = 10.0
RATE = 16000


def _pin_one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def peak_rss_mb() -> float:
    """This process's peak resident memory (``VmHWM``; ``ru_maxrss`` would carry the parent's
    peak across fork + exec on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _time_calls(call, window: np.ndarray, repeats: int, warmup: int = 10) -> dict[str, float]:  # noqa: ANN001
    for _ in range(warmup):
        call(window)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(window)
        times.append((time.perf_counter() - start) * 1e3)
    times = np.asarray(times)
    return {
        "median_ms": float(np.median(times)),
        "min_ms": float(times.min()),
        "p90_ms": float(np.percentile(times, 90)),
    }


def _window(seed: int = 0) -> np.ndarray:
    from aad.data.synthetic import synthesise_clip

    audio = synthesise_clip(
        "fan", "id_00", None, clip_seed=[seed, 3], duration_s=WINDOW_S, sample_rate=RATE, snr_db=6.0
    )
    return audio[None, :, 0].astype(np.float32)


def measure_exported(path: str, repeats: int) -> dict[str, float]:
    """In this (fresh) process: load the export, score the window ``repeats`` times."""
    _pin_one_core()
    window = np.load(os.environ["AAD_BENCH_WINDOW"])
    base_mb = peak_rss_mb()
    from aad.export.runtime import ExportedModel

    if path.endswith(".pt"):
        import torch

        torch.set_num_threads(1)
    imports_mb = peak_rss_mb()
    model = ExportedModel.load(path, threads=1)
    result = _time_calls(model.score, window, repeats)
    result.update(
        peak_rss_mb=peak_rss_mb(),
        imports_rss_mb=imports_mb,
        python_rss_mb=base_mb,
        torch_imported=float("torch" in sys.modules),
    )
    return result


def build_models(ckpts: list[str]) -> dict[str, object]:
    """name -> (fitted module, clip seconds)."""
    import torch

    from aad.checkpoints import load_module
    from aad.models import DCASEAE, LSTMAE

    if ckpts:
        return {Path(c).stem: load_module(c)[0] for c in ckpts}
    waves = torch.from_numpy(np.concatenate([_window(seed) for seed in range(6)]))
    models = {}
    for name, module in (("LSTM-AE", LSTMAE()), ("DCASE AE", DCASEAE())):
        module.eval()
        module.normalizer.update(module.features(waves[:4]))
        module.normalizer.finalize()
        zeros = torch.zeros(2, dtype=torch.long)
        module.calibrate(
            [{"waveform": waves[4:], "target": zeros, "index": torch.arange(2), "domain": zeros}]
        )
        models[name] = module
    return models


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", nargs="*", default=[], help="checkpoints (default: built)")
    parser.add_argument("--formats", nargs="+", default=["onnx", "torchscript"])
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default=None, help="also write the rows as JSON")
    parser.add_argument("--measure", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:  # child process: one exported file
        print(json.dumps(measure_exported(args.measure, args.repeats)))
        return []

    import torch

    from aad.export.exporter import export_module

    torch.set_num_threads(1)
    _pin_one_core()
    rows: list[dict[str, object]] = []
    window = _window(99)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "window.npy", window)
        env = {
            **os.environ,
            "AAD_BENCH_WINDOW": str(Path(tmp) / "window.npy"),
            "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        }
        for name, module in build_models(args.ckpt).items():
            with torch.no_grad():
                eager = _time_calls(
                    lambda w, m=module: m.score({"waveform": torch.from_numpy(w)}),
                    window,
                    args.repeats,
                )
            rows.append({"model": name, "format": "PyTorch eager (baseline)", **eager})
            for fmt in args.formats:
                started = time.perf_counter()
                result = export_module(
                    module,
                    fmt,
                    Path(tmp) / f"{name}_{fmt}".replace(" ", "_"),
                    clip_seconds=WINDOW_S,
                )
                export_s = time.perf_counter() - started
                child = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--measure",
                        str(result.model_path),
                        "--repeats",
                        str(args.repeats),
                    ],
                    capture_output=True,
                    text=True,
                    env=env,
                    check=True,
                )
                measured = json.loads(child.stdout.strip().splitlines()[-1])
                rows.append(
                    {
                        "model": name,
                        "format": fmt,
                        "export_s": export_s,
                        "file_mb": result.model_path.stat().st_size / 2**20,
                        "parity_rel": result.meta.parity["max_relative_gap"],
                        **measured,
                    }
                )
    _print(rows)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return rows


def _print(rows: list[dict[str, object]]) -> None:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\n1 s hop = one {WINDOW_S:g} s window at {RATE} Hz scored, batch 1, one core "
        f"({os.cpu_count()} visible, 1-min load average {load:.1f}); goal < {GOAL_MS:g} ms\n"
    )
    print(
        "| model | format | ms per hop (median) | min | p90 | goal met | file MiB | "
        "peak RSS MiB (imports only) | torch loaded |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        size = f"{r['file_mb']:.2f}" if "file_mb" in r else "-"
        rss = f"{r['peak_rss_mb']:.0f} ({r['imports_rss_mb']:.0f})" if "peak_rss_mb" in r else "-"
        torch_loaded = {1.0: "yes", 0.0: "no"}.get(r.get("torch_imported"), "yes")
        met = "yes" if r["median_ms"] < GOAL_MS else "no"
        print(
            f"| {r['model']} | {r['format']} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {met} | {size} | {rss} | {torch_loaded} |"
        )


if __name__ == "__main__":
    main()
