"""``evaluate.py watch``: a live stream scored every hop, ALERT/CLEAR at the right time.

A small LSTM-AE is trained on the synthetic fans' normal training clips, its threshold
calibrated (gamma, 0.95 quantile) on 16 held-out normal clips of the same machine, and
exported to TorchScript. The stream is one continuous synthetic recording of fan id_00:
6 s normal, 6 s with a bearing fault, 4 s normal again.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from aad.cli.watch import main as watch_main
from aad.data.audio import load_waveform
from aad.data.synthetic import synthesise_clip
from aad.export import load_exported
from aad.export.exporter import export_module
from aad.models import LSTMAE

REPO = Path(__file__).resolve().parents[2]
RATE = 16000
HOP = 0.5
CHANGE_S, BACK_S = 6.0, 12.0


def synth(anomaly: str | None, seed: int, seconds: float) -> np.ndarray:
    audio = synthesise_clip(
        "fan",
        "id_00",
        anomaly,
        clip_seed=[seed, 5],
        duration_s=seconds,
        sample_rate=RATE,
        snr_db=6.0,
    )
    return audio[:, 0].astype(np.float32)


def stream() -> np.ndarray:
    """Normal until CHANGE_S, a bearing fault until BACK_S, then normal for 4 s."""
    return np.concatenate(
        [synth(None, 87, CHANGE_S), synth("bearing", 88, BACK_S - CHANGE_S), synth(None, 89, 4.0)]
    )


@pytest.fixture(scope="module")
def exported(synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(0)
        module = LSTMAE(score="mean", window=16, threshold_quantile=0.95)
        train = sorted((synthetic_root / "fan" / "train").glob("*.wav"))
        waves = torch.stack([load_waveform(p, RATE, 0, 2 * RATE) for p in train])
        module.normalizer.update(module.features(waves))
        module.normalizer.finalize()
        features = module.prepare_features(waves)
        optimiser = torch.optim.Adam(module.parameters(), lr=3e-3)
        for _ in range(80):
            loss = module.training_loss(features, {})
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        held_out = torch.from_numpy(np.stack([synth(None, 1000 + i, 2.0) for i in range(16)]))
        n = len(held_out)
        zeros = torch.zeros(n, dtype=torch.long)
        module.calibrate(
            [{"waveform": held_out, "target": zeros, "index": torch.arange(n), "domain": zeros}]
        )
        out = tmp_path_factory.mktemp("watch_export")
        export_module(module.eval(), "torchscript", out, clip_seconds=2.0, machine_type="fan")
    finally:
        torch.set_num_threads(threads)
    return out


def _watch_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "evaluate.py"), "watch", *args]
    return subprocess.run(command, capture_output=True, cwd=REPO, timeout=120, **kwargs)


def test_stdin_stream_alerts_within_one_hop(exported: Path, tmp_path: Path):
    pcm = np.round(stream() * 32767).astype("<i2").tobytes()
    log = tmp_path / "watch.csv"
    done = _watch_cli(
        ["--ckpt", str(exported), "--input", "-", "--hop_seconds", str(HOP), "--log", str(log)],
        input=pcm,
    )
    text = done.stdout.decode()
    assert done.returncode == 0, text + done.stderr.decode()
    hops = [
        (float(t), v)
        for t, v in re.findall(r"^\s+([\d.]+)s  score .* (normal|ANOMALY)$", text, re.MULTILINE)
    ]
    assert [t for t, _ in hops] == pytest.approx(list(np.arange(2.0, 16.0 + HOP / 2, HOP)))
    alerts = [float(t) for t in re.findall(r"^ALERT at ([\d.]+)s: anomaly", text, re.MULTILINE)]
    clears = [float(t) for t in re.findall(r"^CLEAR at ([\d.]+)s", text, re.MULTILINE)]
    assert len(alerts) == 1 and CHANGE_S < alerts[0] <= CHANGE_S + HOP, text
    assert all(v == "normal" for t, v in hops if t <= CHANGE_S)
    # the window (2 s) has left the fault one window after it ended: back within one hop
    assert len(clears) == 1 and BACK_S < clears[0] <= BACK_S + 2.0 + HOP, text
    assert "stream ended at 16.00s" in text
    table = pd.read_csv(log)
    assert len(table) == len(hops) and table["event"].fillna("").tolist().count("alert") == 1
    assert table.loc[table["event"] == "alert", "time_s"].item() == alerts[0]
    model = load_exported(exported)
    audio = np.frombuffer(pcm, dtype="<i2")
    ends = (table["time_s"].to_numpy() * RATE).astype(int)
    windows = np.stack([audio[end - 2 * RATE : end] for end in ends])
    np.testing.assert_allclose(table["score"], model.score(windows).clip_scores, rtol=1e-6)


def test_stalled_stdin_is_reported_and_exits(exported: Path):
    command = [
        sys.executable,
        str(REPO / "evaluate.py"),
        "watch",
        "--ckpt",
        str(exported),
        "--input",
        "-",
        "--stall_seconds",
        "1",
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO)
    try:
        process.stdin.write(np.zeros(3 * RATE, dtype="<i2").tobytes())  # 3 s, then nothing
        process.stdin.flush()
        code = process.wait(timeout=120)  # stdin stays open: only the stall can end it
        text = process.stdout.read().decode()
    finally:
        process.kill()
        process.stdin.close()
    assert code == 1, text
    assert re.search(r"STALLED: no audio for 1s \(stream time 3\.00s\); stopping after 2 hop", text)


def _wav_header(data_bytes: int) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, RATE, 2 * RATE, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data_bytes)
        + b"WAVEfmt "
        + struct.pack("<I", 16)
        + fmt
        + b"data"
        + struct.pack("<I", data_bytes)
    )


def test_growing_wav_file_is_tailed(exported: Path, tmp_path: Path):
    audio = np.round(stream()[: 5 * RATE] * 32767).astype("<i2")
    path = tmp_path / "recording.wav"
    path.write_bytes(_wav_header(0) + audio[:RATE].tobytes())  # size unknown while recording

    def record() -> None:
        with open(path, "r+b") as handle:
            for start in range(RATE, len(audio), RATE // 4):
                time.sleep(0.05)
                handle.seek(0, 2)
                handle.write(audio[start : start + RATE // 4].tobytes())
                handle.flush()
            handle.seek(0)
            handle.write(_wav_header(2 * len(audio)))  # the writer closes: sizes patched

    writer = threading.Thread(target=record)
    writer.start()
    table = watch_main(
        [
            "--ckpt",
            str(exported),
            "--input",
            str(path),
            "--stall_seconds",
            "10",
            "--poll_seconds",
            "0.05",
        ]
    )
    writer.join()
    assert table.attrs["outcome"] == "ended" and table.attrs["failures"] == 0
    assert table["time_s"].tolist() == [2.0, 3.0, 4.0, 5.0]
    windows = np.stack([audio[(end - 2) * RATE : end * RATE] for end in (2, 3, 4, 5)])
    expected = load_exported(exported).score(windows).clip_scores
    np.testing.assert_allclose(table["score"], expected, rtol=1e-6)


def test_folder_files_are_scored_once_each(exported: Path, tmp_path: Path, capsys):
    folder = tmp_path / "incoming"
    folder.mkdir()
    clips = {"a_normal.wav": synth(None, 7, 2.0), "b_fault.wav": synth("bearing", 8, 2.0)}
    for name, audio in clips.items():
        sf.write(folder / name, audio, RATE, subtype="PCM_16")
    (folder / "c_short.wav").write_bytes(_wav_header(200) + bytes(200))
    table = watch_main(
        [
            "--ckpt",
            str(exported),
            "--input",
            str(folder),
            "--stall_seconds",
            "1",
            "--poll_seconds",
            "0.1",
        ]
    )
    assert table.attrs["outcome"] == "stalled" and table.attrs["failures"] == 1
    assert [Path(p).name for p in table["source"]] == ["a_normal.wav", "b_fault.wav"]
    assert table["decision"].tolist() == [0, 1] and table["event"].tolist() == ["", "alert"]
    text = capsys.readouterr().out
    assert re.search(r"error: .*c_short\.wav: ValueError: clip of 100 samples is shorter", text)
    model = load_exported(exported)
    for name, score in zip(table["source"], table["score"], strict=True):
        audio, _ = sf.read(name, dtype="float32")
        np.testing.assert_allclose(score, model.score(audio).clip_scores[0], rtol=1e-6)
