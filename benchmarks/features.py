"""Feature throughput: librosa reference vs aad on CPU (and GPU), plus WAV-on-disk end to end.

Prints one table in hours of audio per second (h/s). Example::

    python benchmarks/features.py                       # CPU, temp WAVs, ~1-2 min
    python benchmarks/features.py --wav-dir DIR --num-workers 16 --batch-sizes 1 32 256
"""

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset

from aad.features import FeatureConfig, FeatureExtractor, seed_study_config

DESCRIPTORS = ["rms", "centroid", "bandwidth", "rolloff", "flatness", "contrast", "zcr"]
CONFIGS: dict[str, Callable[[int], FeatureConfig]] = {
    "default": lambda sr: FeatureConfig(sample_rate=sr),
    "study": lambda sr: seed_study_config(),
    "descriptors": lambda sr: FeatureConfig(sample_rate=sr, features=DESCRIPTORS),
    "all": lambda sr: FeatureConfig(
        sample_rate=sr, features=["mel", "mfcc", "chroma", "cens", *DESCRIPTORS]
    ),
}
GOALS = {
    "cpu": "aad CPU >= 20x librosa",
    "cuda": ">= 200 h/s in memory (H100)",
    "e2e": ">= 10 h/s with 16 cores",
}


def machine_info() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"CPU: {cpu}, {os.cpu_count()} cores visible, torch threads {torch.get_num_threads()}; "
        f"torch {torch.__version__}; GPU: {gpu}"
    )


def synthetic_clips(count: int, samples: int, seed: int = 0) -> np.ndarray:
    """Noise plus a few machine-like tones, float32 ``(count, samples)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(samples) / 16000.0
    clips = 0.05 * rng.standard_normal((count, samples))
    for row in clips:
        row += 0.2 * np.sin(2 * np.pi * rng.uniform(50, 2000) * t)
    return clips.astype(np.float32)


def time_call(fn: Callable[[], object], iters: int, sync: Callable[[], None]) -> float:
    """Seconds per call: one warm-up, then the best of ``iters`` timed calls."""
    fn()
    sync()
    best = float("inf")
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


def librosa_reference(clips: np.ndarray, sr: int) -> float:
    """Seconds per clip for the seed study's per-clip librosa path (mel + MFCC + CQT CENS)."""
    import librosa

    def one(y: np.ndarray) -> None:
        mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=2048, hop_length=512, n_mels=64)
        librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=13)
        librosa.feature.chroma_cens(y=y, sr=sr, hop_length=512, win_len_smooth=41)[:, ::5]

    one(clips[0])  # warm-up (numba, filter caches)
    start = time.perf_counter()
    for y in clips:
        one(y)
    return (time.perf_counter() - start) / len(clips)


class WavFolder(Dataset):
    """Mono float32 clips of ``samples`` (channel mean, crop or zero-pad) from WAV files."""

    def __init__(self, paths: list[Path], samples: int) -> None:
        self.paths = paths
        self.samples = samples

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        data, _ = sf.read(self.paths[index], dtype="float32", always_2d=True, frames=self.samples)
        mono = data.mean(axis=1)
        out = np.zeros(self.samples, dtype=np.float32)
        out[: mono.size] = mono
        return torch.from_numpy(out)


def end_to_end(
    extractor: FeatureExtractor,
    paths: list[Path],
    samples: int,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> tuple[float, int, float]:
    """Read every WAV with a DataLoader and compute features on ``device``.

    Returns (total seconds, clips after the first batch, seconds after the first batch): the
    second pair is the steady-state rate without worker start-up.
    """
    loader = DataLoader(
        WavFolder(paths, samples),
        batch_size=batch_size,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
    )
    start = time.perf_counter()
    first_done, clips_after = None, 0
    with torch.inference_mode():
        for batch in loader:
            extractor(batch.to(device, non_blocking=True))
            if device.type == "cuda":
                torch.cuda.synchronize()
            if first_done is None:
                first_done = time.perf_counter()
            else:
                clips_after += batch.shape[0]
    end = time.perf_counter()
    return end - start, clips_after, end - (first_done or end)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--config",
        choices=("default", "study", "descriptors", "all"),
        default="default",
        help="default: mel+mfcc+cens; study: seed_study_config(); descriptors: the seven frame "
        "descriptors (rms ... zcr); all: mel+mfcc+chroma+cens+descriptors, one STFT",
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="clip length")
    parser.add_argument("--sample-rate", type=int, default=16000)
    parser.add_argument("--librosa-clips", type=int, default=4)
    parser.add_argument(
        "--reference-ms",
        type=float,
        help="librosa ms per clip measured elsewhere (used only when librosa is missing)",
    )
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--iters", type=int, default=2, help="timed calls per batch size")
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--wav-dir", type=Path, default=None, help="folder of WAVs (recursive)")
    parser.add_argument("--e2e-clips", type=int, default=256, help="temp WAVs when no --wav-dir")
    parser.add_argument("--e2e-batch", type=int, default=32)
    parser.add_argument("--num-workers", type=int, default=min(os.cpu_count() or 1, 16))
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    sr = args.sample_rate
    samples = int(args.seconds * sr)
    hours_per_clip = args.seconds / 3600.0
    config = CONFIGS[args.config](sr)
    print(machine_info())
    print(f"aad config: {args.config} (signature {config.signature()}), clips of {args.seconds} s")
    rows: list[tuple[str, str, float, str]] = []

    try:
        ref_seconds = librosa_reference(synthetic_clips(args.librosa_clips, samples), sr)
        source = "measured here"
    except ImportError:  # e.g. a GPU machine without librosa: use a timing given by the user
        if args.reference_ms is None:
            message = "librosa is not installed: install it or pass --reference-ms"
            raise SystemExit(message) from None
        ref_seconds, source = args.reference_ms / 1000.0, "given by --reference-ms"
    ref_rate = hours_per_clip / ref_seconds
    rows.append(("librosa mel+mfcc+CQT chroma_cens", "per clip", ref_rate, f"reference ({source})"))
    print(f"librosa reference: {1000 * ref_seconds:.1f} ms per clip ({source})")

    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_gpu:
        devices.append(torch.device("cuda"))
    clips = torch.from_numpy(synthetic_clips(max(args.batch_sizes), samples, seed=1))
    for device in devices:
        extractor = FeatureExtractor(config).to(device).eval()
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for batch_size in args.batch_sizes:
            batch = clips[:batch_size].to(device)
            with torch.inference_mode():
                seconds = time_call(lambda b=batch, e=extractor: e(b), args.iters, sync)
            rate = batch_size * hours_per_clip / seconds
            goal = GOALS["cpu"] if device.type == "cpu" else GOALS["cuda"]
            note = f"{rate / ref_rate:.0f}x librosa; goal {goal}"
            rows.append((f"aad {device.type} in memory", f"batch {batch_size}", rate, note))
            print(f"  {device.type} batch {batch_size}: {1000 * seconds:.1f} ms per batch")

    with tempfile.TemporaryDirectory() as tmp:
        if args.wav_dir is not None:
            paths = sorted(args.wav_dir.rglob("*.wav"))
        else:
            paths = []
            for index, clip in enumerate(synthetic_clips(args.e2e_clips, samples, seed=2)):
                path = Path(tmp) / f"clip_{index:05d}.wav"
                sf.write(path, clip, sr, subtype="PCM_16")
                paths.append(path)
        device = devices[-1]
        extractor = FeatureExtractor(config).to(device).eval()
        total, steady_clips, steady = end_to_end(
            extractor, paths, samples, args.e2e_batch, args.num_workers, device
        )
        where = f"{len(paths)} WAVs, batch {args.e2e_batch}, {args.num_workers} workers"
        label = f"aad WAV->features ({device.type})"
        goal = f"goal {GOALS['e2e']}"
        rows.append((label, where, len(paths) * hours_per_clip / total, f"incl. start-up; {goal}"))
        if steady_clips:
            rate = steady_clips * hours_per_clip / steady
            rows.append((label, "after the first batch", rate, f"steady state; {goal}"))

    print()
    print(f"| {'path':<36} | {'setting':<34} | {'h audio / s':>11} | note")
    print(f"|{'-' * 38}|{'-' * 36}|{'-' * 13}|------")
    for path, setting, rate, note in rows:
        print(f"| {path:<36} | {setting:<34} | {rate:>11.3f} | {note}")


if __name__ == "__main__":
    main()
