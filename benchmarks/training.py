"""Training throughput of the LSTM-AE in clips/s: full Lightning loop vs a model-only ceiling.

* ``lightning``: ``Trainer.fit`` of :class:`aad.models.LSTMAE` on in-memory 10 s waveforms
  (no disk I/O), features computed on the device in ``on_after_batch_transfer``,
  normaliser fitting excluded (timed from the first training batch).
* ``model-only``: a bare 2-layer LSTM autoencoder step (forward, MSE, backward, Adam) over
  ``(B, 313, 160)`` feature tensors already on the device: the ceiling of the loop above.

Both use hidden 128, latent 16, one window of 313 frames (= a 10 s clip at hop 512), 160
features (128 mels + 20 MFCC + 12 chroma). On CUDA both run in bf16 autocast as training does.

    python benchmarks/training.py [--device cpu|cuda|all] [--batch-size 16] [--steps 10]
                                  [--threads N] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aad.models import LSTMAE  # noqa: E402
from aad.models.lstm_ae.torch_model import LSTMAutoencoder  # noqa: E402

SAMPLE_RATE = 16000
CLIP_SAMPLES = 10 * SAMPLE_RATE
FEATURES = {"features": ["mel", "mfcc", "chroma"], "mel": {"n_mels": 128}}
MODEL = {"window": 313, "hidden_size": 128, "latent_size": 16, "num_layers": 2}


class _Waveforms(Dataset):
    def __init__(self, n: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.waveforms = 0.05 * torch.randn(n, CLIP_SAMPLES, generator=generator)

    def __len__(self) -> int:
        return len(self.waveforms)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"waveform": self.waveforms[i], "target": torch.tensor(0), "index": torch.tensor(i)}


class _Timer(L.Callback):
    def __init__(self, warmup: int) -> None:
        self.warmup, self.start, self.clips = warmup, None, 0

    def _sync(self, module: L.LightningModule) -> None:
        if module.device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:  # noqa: ANN001
        if batch_idx == self.warmup:
            self._sync(module)
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:  # noqa: ANN001
        if batch_idx >= self.warmup:
            self.clips += batch["waveform"].shape[0]
            self._sync(module)
            self.elapsed = time.perf_counter() - self.start


def lightning_throughput(device: str, batch_size: int, steps: int, warmup: int = 2) -> float:
    """Clips/s of ``Trainer.fit`` (one epoch of ``steps + warmup`` batches)."""
    module = LSTMAE(features=FEATURES, **MODEL)
    loader = DataLoader(_Waveforms(batch_size * (steps + warmup)), batch_size=batch_size)
    timer = _Timer(warmup)
    trainer = L.Trainer(
        accelerator=device,
        devices=1,
        max_epochs=1,
        precision="bf16-mixed" if device == "cuda" else "32-true",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
        limit_val_batches=0,
    )
    trainer.fit(module, train_dataloaders=loader)
    return timer.clips / timer.elapsed


def model_only_throughput(device: str, batch_size: int, steps: int, warmup: int = 2) -> float:
    """Clips/s of bare LSTM-AE steps on ``(B, 313, 160)`` tensors already on the device."""
    model = LSTMAutoencoder(160, hidden_size=128, latent_size=16, num_layers=2).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    features = torch.randn(batch_size, 313, 160, device=device)
    autocast = torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=device == "cuda")
    for step in range(steps + warmup):
        if step == warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast:
            loss = torch.nn.functional.mse_loss(model(features), features)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device == "cuda":
        torch.cuda.synchronize()
    return batch_size * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="all", choices=["all", "cpu", "cuda"])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10, help="timed steps (after 2 warm-up)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    devices = [d for d in devices if d == "cpu" or torch.cuda.is_available()]
    torch.manual_seed(0)
    results = []
    for device in devices:
        paths = (("model-only", model_only_throughput), ("lightning", lightning_throughput))
        for name, fn in paths:
            clips_per_s = fn(device, args.batch_size, args.steps)
            results.append(
                {
                    "device": device,
                    "path": name,
                    "batch_size": args.batch_size,
                    "precision": "bf16-mixed" if device == "cuda" else "32-true",
                    "clips_per_s": round(clips_per_s, 2),
                }
            )
            print(f"{device:5s} {name:11s} batch {args.batch_size:3d}: {clips_per_s:9.2f} clips/s")
    if torch.get_num_threads():
        print(
            f"(torch threads: {torch.get_num_threads()}; "
            f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
