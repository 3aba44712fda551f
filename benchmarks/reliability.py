"""aad's hostile-user yardstick (issue 9): bad audio, paths, configs and checkpoints, killed runs
and determinism. Every case runs ``train.py``, ``evaluate.py``, ``python -m aad.compare`` or
``python -m aad.data.synthetic`` as a subprocess (with a timeout) on a small synthetic set in a
temporary folder, and gets one verdict:

* ``clean error``: exit status non-zero, an ``error: ...`` line, no Python traceback, nothing
  run that must not run (witness files stay absent), no work started before the error;
* ``handled``: the run finished as documented: each bad input named in a warning or given a
  status row, every good result written, the documented exit status (evaluate.py and predict:
  non-zero when a clip has no score; train.py and compare: non-zero when a group failed);
* ``BUG``: anything else (a traceback, a timeout, a lost result, a bad input taken silently);
* ``n/a``: not testable here (an unreadable folder when running as root: chmod blocks nothing).

    python benchmarks/reliability.py [--out results/reliability] [--quick] [--jobs 2] [--keep]

``--quick`` puts every bad-audio kind in one folder per command instead of one folder per kind
(each kind still gets a row, so the rows of one command share its run: one crash makes them all
BUG) and skips the extra variants: 8 CPU-minutes instead of 16 (7 and 8-18 min wall on 2
shared cores). Writes ``reliability.md``, ``reliability.csv`` and each case's output in
``logs/``. Exits 1 when any case is a BUG or a harness error.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import math
import os
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from traceback import format_exc

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TRACEBACK = "Traceback (most recent call last)"
ERROR_LINE = re.compile(r"^(?:\S+: )?error: .+$", re.MULTILINE)
TINY = ["--data.clip_seconds", "2", "--data.batch_size", "4", "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--model.init_args.hidden_size", "16", "--model.init_args.latent_size", "4"]  # fmt: skip
"""``train.py`` settings of every tiny run (``[tiny]`` in the table)."""
FIELDS = ("id", "group", "case", "command", "exit", "traceback", "expected", "found", "verdict",
          "seconds")  # fmt: skip
VERDICTS = ("clean error", "handled", "BUG", "n/a", "harness error")
TWO_DETECTORS = """methods:
  - {name: isolation_forest, detector: {class_path: aad.detectors.IsolationForestDetector}}
  - {name: knn, detector: {class_path: aad.detectors.KNNDetector}}
"""


@dataclass
class Run:
    """One subprocess: exit status (None = timed out), output, wall time."""

    argv: list[str]
    rc: int | None
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return f"{self.out}\n{self.err}"

    @property
    def traceback(self) -> bool:
        return TRACEBACK in self.text

    def error(self) -> str:
        """The ``error:`` line, with the first ``- reason`` line of a jsonargparse listing."""
        match = ERROR_LINE.search(self.text)
        if not match:
            return ""
        after = [x.strip() for x in self.text[match.end() :].splitlines()[:12]]
        reasons = [x for x in after if x.startswith("- ") and "NoneType" not in x]
        reason = next((x for x in reasons if "subclass" in x), reasons[0] if reasons else "")
        return f"{match[0].strip()} {reason}".strip()


@dataclass
class Row:
    id: int
    group: str
    case: str
    command: str
    exit: str
    traceback: str
    expected: str
    found: str
    verdict: str
    seconds: float
    problems: list[str] = field(default_factory=list)


Check = Callable[[Run], tuple[list[str], str]]
Task = Callable[[], list[Row]]


class Bench:
    """The temporary workspace, the fixtures every case shares, the subprocess runner."""

    def __init__(self, tmp: Path, out: Path, quick: bool) -> None:
        self.tmp, self.out, self.quick, self.data = tmp, out, quick, tmp / "data"
        self.ckpt = Path()
        self.env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    def run(self, argv: list, log: str, timeout: float = 300) -> Run:
        argv, start = [str(a) for a in argv], time.perf_counter()
        try:
            done = subprocess.run(argv, cwd=self.tmp, env=self.env, capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip
            rc, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as expired:
            rc, out, err = None, _text(expired.stdout), _text(expired.stderr)
        return self.log(log, Run(argv, rc, out, err, time.perf_counter() - start))

    def kill_when(self, argv: list, done: Callable[[], bool], log: str) -> tuple[Run, bool]:
        """Start ``argv``, SIGKILL it once ``done()``; returns (run, whether it was killed)."""
        argv, start = [str(a) for a in argv], time.perf_counter()
        with tempfile.TemporaryFile("w+") as sink:  # a pipe nobody reads could stall the child
            proc = subprocess.Popen(argv, cwd=self.tmp, env=self.env, stdin=subprocess.DEVNULL,
                                    stdout=sink, stderr=subprocess.STDOUT)  # fmt: skip
            while proc.poll() is None and not done() and time.perf_counter() - start < 400:
                time.sleep(0.02)
            alive = proc.poll() is None
            if alive:
                os.kill(proc.pid, signal.SIGKILL)
            rc = proc.wait()
            sink.seek(0)
            run = Run(argv, rc, sink.read(), "", time.perf_counter() - start)
        return self.log(log, run), alive

    def log(self, name: str, run: Run) -> Run:
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        head = f"$ {self.show(run.argv)}\n# exit {run.rc}, {run.seconds:.1f} s\n"
        text = f"{head}--- stdout\n{run.out}\n--- stderr\n{run.err}\n"
        (self.out / "logs" / f"{_slug(name)}.log").write_text(text)
        return run

    def show(self, text: str | list[str]) -> str:
        if isinstance(text, list):
            text = shlex.join(text).replace(shlex.join(TINY), "[tiny]")
        for old, new in ((str(self.tmp), "$TMP"), (PY, "python"), (f"{REPO}/", "")):
            text = text.replace(old, new)
        return text

    def train(self, *args: object) -> list:
        return [PY, REPO / "train.py", *TINY, *args]

    def evaluate(self, *args: object, ckpt: Path | None = None) -> list:
        return [PY, REPO / "evaluate.py", "--ckpt", ckpt or self.ckpt, "--torch_threads", "1",
                *args]  # fmt: skip

    def predict(self, *args: object, ckpt: Path | None = None, verb: str = "predict") -> list:
        return [PY, REPO / "evaluate.py", verb, "--ckpt", ckpt or self.ckpt, "--torch_threads",
                "1", *args]  # fmt: skip

    def compare(self, *args: object) -> list:
        return [PY, "-m", "aad.compare", "--torch_threads", "1", "--embedding.cache_dir",
                self.tmp / "cache", *args]  # fmt: skip

    def folder(self, name: str) -> Path:
        path = self.tmp / "cases" / _slug(name)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def prepare(self) -> None:
        """The synthetic sets (2 types x 2 ids x 6 + 3 + 3 clips of 2 s; one type, one id,
        5 + 3 + 3 clips of 10 s) and one tiny LSTM-AE trained on fan."""
        from aad.data.synthetic import generate_dataset

        generate_dataset(self.data, machine_types=["fan", "valve"], machine_ids=["id_00", "id_02"],
                         n_train=6, n_test_normal=3, n_test_anomaly=3, duration_s=2.0)  # fmt: skip
        generate_dataset(self.tmp / "five", machine_types=["fan"], machine_ids=["id_00"],
                         n_train=5, n_test_normal=3, n_test_anomaly=3, duration_s=10.0)  # fmt: skip
        (self.tmp / "afile").write_text("a regular file: no folder can be made under it\n")
        (self.tmp / "two_detectors.yaml").write_text(TWO_DETECTORS)
        runs = self.tmp / "base"
        argv = self.train("--data.root", self.data, "--data.machine_type", "fan",
                          "--trainer.default_root_dir", runs)  # fmt: skip
        run = self.run(argv, "000_base_training")
        found = sorted(runs.glob("lightning_logs/version_0/checkpoints/best*.ckpt"))
        if run.rc != 0 or not found:
            sys.exit(f"error: the base training failed (exit {run.rc}); see {self.out}/logs")
        self.ckpt = found[-1]


def _text(value: bytes | str | None) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value or ""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")[:90]


def read_rows(path: Path) -> list[dict[str, str]] | None:
    if not path.is_file():
        return None
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def finite(value: str | None) -> bool:
    try:
        return math.isfinite(float(value or "nan"))
    except ValueError:
        return False


def judge(b: Bench, group: str, case: str, run: Run, expect: str, expected: str,
          problems: list[str], found: str = "") -> Row:  # fmt: skip
    """One table row; ``expect`` is "error" (a clean error), "handled" or "n/a"."""
    problems = list(problems)
    if run.rc is None:
        problems.insert(0, f"timed out after {run.seconds:.0f} s")
    if run.traceback:
        problems.append("Python traceback")
    if expect == "handled" and run.error():
        problems.append(f"ended with {run.error()}")
    if expect == "error":
        problems += (["exit status 0"] if run.rc == 0 else []) + ([] if run.error() else
                                                                  ["no 'error:' line"])  # fmt: skip
        found = found or run.error()
    names = {"error": "clean error", "handled": "handled", "n/a": "n/a"}
    verdict = "BUG" if problems and expect != "n/a" else names[expect]
    found = " ".join(b.show("; ".join([*problems, found] if found else problems)).split())
    return Row(0, group, case, b.show(run.argv), str(run.rc), "yes" if run.traceback else "no",
               expected, found[:260], verdict, round(run.seconds, 1), problems)  # fmt: skip


# ----------------------------------------------------------------------------- checks
def says(*words: str) -> Check:
    return lambda run: ([f"does not name {w!r}" for w in words if w not in run.text], "")


def absent(path: Path) -> Check:
    return lambda run: ([f"the payload ran ({path.name} exists)"] if path.exists() else [], "")


def no_work(run: Run) -> tuple[list[str], str]:
    """No method was fitted and scored before the error."""
    return (["a method ran before the error"] if " AUC " in run.text else []), ""


def no_ckpt(run: Run) -> tuple[list[str], str]:
    """No checkpoint under the run's ``--trainer.default_root_dir``."""
    folder = Path(run.argv[run.argv.index("--trainer.default_root_dir") + 1])
    return (["trained before failing"] if any(folder.rglob("*.ckpt")) else []), ""


def rows_ok(table: Path, n: int, value: str = "", column: str = "machine_type") -> Check:
    """``table`` holds at least ``n`` rows with status ok (and ``column == value``)."""

    def check(run: Run) -> tuple[list[str], str]:
        rows = [r for r in read_rows(table) or [] if not value or r.get(column) == value]
        ok = sum(r.get("status", "ok") == "ok" for r in rows)
        what = f"{ok} {value} rows in {table.name}"
        return ([] if ok >= n else [f"lost: {ok} of {n} {value} rows in {table.name}"]), what

    return check


def exits(nonzero: bool) -> Check:
    return lambda run: ([] if (run.rc not in (0, None)) == nonzero else [f"exit {run.rc}"], "")


def note(*words: str) -> Check:
    def check(run: Run) -> tuple[list[str], str]:
        line = next((x for x in run.text.splitlines() if x.startswith("note:")), "")
        missing = [w for w in words if w not in line]
        return ([f"no note naming {', '.join(missing)}"] if missing else []), line

    return check


def case(b: Bench, group: str, name: str, argv: list, expect: str, expected: str,
         checks: tuple = (), timeout: float = 300, extra: bool = False) -> Task:  # fmt: skip
    """A task running ``argv`` once and judging it; ``extra``: skipped by ``--quick``."""

    def task() -> list[Row]:
        run = b.run(argv, f"{group}_{name}", timeout)
        problems, found = [], ""
        for check in checks:
            more, text = check(run)
            problems, found = problems + more, found or text
        return [judge(b, group, name, run, expect, expected, problems, found)]

    task.extra = extra  # type: ignore[attr-defined]
    return task


# ----------------------------------------------------------------------------- bad audio
SR = 16000
# Expected in (training folder, evaluated test folder, predict folder): R refused and named (with
# a status row where the command writes rows), A accepted and scored, E either, X clean error.
KINDS = {"zero-length file": "RRR", "header only (no data)": "RRR", "truncated data chunk": "RRR",
         "text renamed .wav": "RRR", "MP3 bytes renamed .wav": "EEE",
         "OGG bytes renamed .wav": "EEE", "all-silent": "REE", "0.1 s clip": "RRR",
         "10-minute clip": "AAA", "NaN samples": "RRR", "Inf samples": "RRR",
         "float WAV scaled by 1e20": "RRR", "8-bit PCM": "AAA", "24-bit PCM": "AAA",
         "32-bit int PCM": "AAA", "float64 WAV": "AAA", "8 kHz": "AAA", "44.1 kHz": "AAA",
         "stereo": "AAA", "8-channel (channel 0)": "AAA", "8-channel with --data.channel 9": "XXX",
         "DC offset only": "EEE", "clipped square wave": "AAA", "directory named x.wav": "RRR",
         "dangling symlink": "RRR", "symlink loop": "RRR", "FIFO": "RRR"}  # fmt: skip
CONTEXTS = {"train": 0, "evaluate": 1, "predict": 2, "train-test": 1}
"""Where the bad file goes (a training folder, the test folder evaluate.py scores, a predict
folder, the test folder of a train.py run) -> its column in :data:`KINDS`."""
GOOD = {"train": 12, "evaluate": 12, "predict": 4, "train-test": 12}
"""Good test clips each command must score (fan: 2 ids x (3 + 3); predict: 4 clips)."""
EXPECTED = {"R": ("left out, named", "status row or named", "status row"),
            "A": ("accepted", "accepted, scored", "accepted, scored"),
            "E": ("named or accepted",) * 3}  # fmt: skip
EXPLAIN = ("zero-length file", "0.1 s clip", "NaN samples", "float WAV scaled by 1e20",
           "directory named x.wav")  # fmt: skip
"""Kinds given to ``evaluate.py --explain``: each must be a clean error, never a verdict."""


def write_kind(kind: str, path: Path, clip: np.ndarray) -> None:
    """Write one bad (or merely unusual) input of ``kind`` at ``path``."""
    import soundfile as sf
    from scipy.signal import resample_poly

    def wav(data: np.ndarray, rate: int = SR, subtype: str | None = "PCM_16", fmt="WAV") -> None:
        sf.write(str(path), data, rate, subtype=subtype, format=fmt)

    spoiled, t = clip.astype(np.float32), np.arange(2 * SR) / SR
    if kind == "zero-length file":
        path.write_bytes(b"")
    elif kind.startswith(("header only", "truncated")):
        wav(clip)
        raw = path.read_bytes()
        path.write_bytes(raw[:44] if kind.startswith("header") else raw[: len(raw) * 3 // 10])
    elif kind == "text renamed .wav":
        path.write_text("this is not audio\n" * 100)
    elif kind.startswith(("MP3", "OGG")):
        wav(clip, subtype=None, fmt=kind[:3])
    elif kind in ("NaN samples", "Inf samples"):
        spoiled[1000:1100] = np.nan if kind.startswith("NaN") else np.inf
        wav(spoiled, subtype="FLOAT")
    elif kind.startswith("8-channel"):
        wav(np.tile(clip[:, None], (1, 8)), fmt="WAVEX")
    elif kind == "directory named x.wav":
        path.mkdir()
    elif kind == "dangling symlink":
        path.symlink_to(path.with_name("missing_target.wav"))
    elif kind == "symlink loop":
        path.symlink_to(path.name)
    elif kind == "FIFO":
        os.mkfifo(path)
    else:
        square = np.clip(1.5 * np.sign(np.sin(2 * np.pi * 120 * t)), -1, 1)
        data, rate, subtype = {
            "all-silent": (np.zeros(2 * SR), SR, "PCM_16"),
            "0.1 s clip": (clip[: SR // 10], SR, "PCM_16"),
            "10-minute clip": (np.tile(clip, 300), SR, "PCM_16"),
            "float WAV scaled by 1e20": (spoiled * 1e20, SR, "FLOAT"),
            "8-bit PCM": (clip, SR, "PCM_U8"),
            "24-bit PCM": (clip, SR, "PCM_24"),
            "32-bit int PCM": (clip, SR, "PCM_32"),
            "float64 WAV": (clip, SR, "DOUBLE"),
            "8 kHz": (resample_poly(clip, 1, 2), 8000, "PCM_16"),
            "44.1 kHz": (resample_poly(clip, 441, 160), 44100, "PCM_16"),
            "stereo": (np.stack([clip, 0.5 * clip], axis=1), SR, "PCM_16"),
            "DC offset only": (np.full(2 * SR, 0.25), SR, "PCM_16"),
            "clipped square wave": (square, SR, "PCM_16"),
        }[kind]
        wav(data, rate, subtype)


def audio_run(b: Bench, ctx: str, kinds: list[str]) -> tuple[Run, dict[str, str], Path]:
    """One folder holding ``kinds`` (beside good clips) given to ``ctx``'s command."""
    import soundfile as sf

    label = f"audio_{ctx}_{_slug(kinds[0]) if len(kinds) == 1 else 'all_kinds'}"
    home = b.folder(label)
    clip, _ = sf.read(str(b.data / "fan" / "train" / "normal_id_00_00000000.wav"))
    if ctx == "predict":
        sub, prefix = home / "files", "clip"
        sub.mkdir()
        for path in sorted((b.data / "fan" / "test").glob("*id_00*"))[:4]:
            shutil.copy(path, sub)
    else:
        shutil.copytree(b.data / "fan", home / "root" / "fan")
        sub = home / "root" / "fan" / ("train" if ctx == "train" else "test")
        prefix = "normal" if ctx == "train" else "anomaly"
    names = {kind: f"{prefix}_id_00_{90000000 + i}.wav" for i, kind in enumerate(kinds)}
    for kind, name in names.items():
        write_kind(kind, sub / name, clip)
    extra = ["--data.channel", "9"] if any(k.endswith("channel 9") for k in kinds) else []
    if ctx.startswith("train"):
        argv = b.train("--data.root", home / "root", "--trainer.default_root_dir", home, *extra)
        table = home / "lightning_logs" / "version_0" / "test" / "scores.csv"
    elif ctx == "evaluate":
        argv = b.evaluate("--data.root", home / "root", "--out", home / "eval", *extra)
        table = home / "eval" / "scores.csv"
    else:
        argv, table = b.predict(sub, "--out", home / "pred", *extra), home / "pred/predictions.csv"
    return b.run(argv, label, timeout=480), names, table


def kind_outcome(ctx: str, run: Run, name: str, rows: list | None) -> tuple[str, str]:
    """What became of one bad file: refused / accepted / named, no row / dropped silently."""
    named = [line for line in run.err.splitlines() if name in line]
    reason = named[0].split(name, 1)[1].lstrip(" :") if named else ""
    if ctx == "train":
        return ("refused", reason) if named else ("accepted", "")
    row = next((r for r in rows or [] if r["path"].endswith("/" + name)), None)
    if row is None:
        return ("named, no row", reason) if named else ("dropped silently", "")
    if row["status"] != "ok":
        return "refused", row["status"]
    if not finite(row["score"]):
        return "non-finite score with status ok", ""
    return "accepted", f"score {float(row['score']):.3g}"


def outcome_problem(ctx: str, code: str, outcome: str) -> list[str]:
    allowed = {"R": {"refused"}, "A": {"accepted"}, "E": {"refused", "accepted"}}[code]
    if ctx != "predict" and code != "A":
        allowed = allowed | {"named, no row"}  # walker-level kinds are no clips: named only
    return [] if outcome in allowed else [outcome]


def run_problems(ctx: str, run: Run, table: Path, outcomes: dict) -> list[str]:
    """Whole-command checks: every good clip scored, clip counts, exit status as documented."""
    rows = read_rows(table)
    if rows is None:
        return [f"lost: no {'predictions' if ctx == 'predict' else 'scores'}.csv"]
    bad = {name for name, _ in outcomes.values()}
    good = [r for r in rows if r["path"].rsplit("/", 1)[-1] not in bad]
    ok = sum(r["status"] == "ok" and finite(r["score"]) for r in good)
    problems = [] if ok >= GOOD[ctx] else [f"lost: {ok} of {GOOD[ctx]} good clips scored"]
    if ctx != "predict" and not (table.parent / "metrics.csv").is_file():
        problems.append("lost: no metrics.csv")
    # evaluate.py and predict exit 1 when a clip has no score; train.py only when a group
    # fails (docs/training.md), and a skipped clip fails no group
    failed = ctx in ("evaluate", "predict") and any(r["status"] != "ok" for r in rows)
    if failed != (run.rc not in (0, None)):
        problems.append(f"exit {run.rc}, expected {'non-zero' if failed else 0}")
    counted = re.search(r"\[aad\] fan: (\d+) train", run.out)
    wanted = GOOD["train"] + sum(o == "accepted" for _, (o, _) in outcomes.values())
    if ctx == "train" and counted and int(counted[1]) != wanted:
        problems.append(f"{counted[1]} training clips used, expected {wanted}")
    return problems


def audio_rows(b: Bench, ctx: str, kinds: list[str], per_kind: bool) -> list[Row]:
    """One folder holding ``kinds``: one row per kind (``per_kind``) or one for the folder."""
    group, at = f"bad audio ({ctx})", CONTEXTS[ctx]
    run, names, table = audio_run(b, ctx, kinds)
    rows = read_rows(table)
    if kinds[0].endswith("channel 9"):
        return [judge(b, group, kinds[0], run, "error", "clean error", [])]
    outcomes = {k: (names[k], kind_outcome(ctx, run, names[k], rows)) for k in kinds}
    common = run_problems(ctx, run, table, outcomes)
    if per_kind:
        return [judge(b, group, k, run, "handled", EXPECTED[KINDS[k][at]][at],
                      common + outcome_problem(ctx, KINDS[k][at], o), f"{o}: {why}" if why else o)
                for k, (_, (o, why)) in outcomes.items()]  # fmt: skip
    wrong = [f"{k}: {p}" for k, (_, (o, _)) in outcomes.items()
             for p in outcome_problem(ctx, KINDS[k][at], o)]  # fmt: skip
    tally = [o for _, (o, _) in outcomes.values()]
    found = ", ".join(f"{tally.count(o)} {o}" for o in sorted(set(tally)))
    return [judge(b, group, f"all {len(kinds)} kinds in one folder", run, "handled",
                  "each kind as in its own row", common + wrong, found)]  # fmt: skip


def explain_task(b: Bench, kind: str) -> Task:
    def task() -> list[Row]:
        import soundfile as sf

        clip, _ = sf.read(str(b.data / "fan" / "train" / "normal_id_00_00000000.wav"))
        home = b.folder(f"explain_{kind}")
        write_kind(kind, home / "clip.wav", clip)
        argv = b.evaluate("--explain", home / "clip.wav", "--out", home / "out")
        run = b.run(argv, f"audio_explain_{kind}")
        verdict = re.search(r"score \S+, (normal|anomaly)", run.out)
        problems = [f"reported {verdict[1]}"] if verdict else []
        return [judge(b, "bad audio (explain)", kind, run, "error", "clean error", problems)]

    task.extra = True  # type: ignore[attr-defined]
    return task


def audio_tasks(b: Bench) -> list[Task]:
    kinds = [k for k in KINDS if not k.endswith("channel 9")]
    tasks: list[Task] = []
    tasks.append(lambda: audio_rows(b, "train-test", kinds, per_kind=b.quick))
    for ctx in ("train", "evaluate", "predict"):
        tasks.append(lambda ctx=ctx: audio_rows(b, ctx, kinds, per_kind=b.quick))
        tasks.append(lambda ctx=ctx: audio_rows(b, ctx, ["8-channel with --data.channel 9"], True))
        if not b.quick:
            tasks += [lambda ctx=ctx, k=k: audio_rows(b, ctx, [k], True) for k in kinds]
    return tasks + [explain_task(b, kind) for kind in EXPLAIN]


# ----------------------------------------------------------------------------- paths, configs
def path_tasks(b: Bench) -> list[Task]:
    t, data, g, err = b.tmp, b.data, "bad paths", "error naming it"
    for folder in ("empty_root", "no_wavs", "linked_root", "unknown_layout/some/where"):
        (t / folder).mkdir(parents=True)
    shutil.copy(data / "fan/test/normal_id_00_00000000.wav", t / "unknown_layout/some/where/x.wav")
    (t / "linked_root" / "fan").symlink_to(data / "fan", target_is_directory=True)
    shutil.copytree(data / "fan", t / "locked_root" / "fan")
    (t / "locked_root" / "fan" / "train").chmod(0)
    shutil.copytree(data / "fan", t / "normals_only" / "fan", ignore=shutil.ignore_patterns("an*"))
    as_root, two, nope, linked = os.geteuid() == 0, t / "two_detectors.yaml", t / "nope", t / "ln"
    number = itertools.count()

    def tr(*args: object) -> list:
        return b.train(*args, "--trainer.default_root_dir", b.folder(f"p{next(number)}"))

    def cmp(*args: object) -> list:
        return b.compare("--config", two, *args, "--out", b.folder(f"p{next(number)}"))

    def undefined(run: Run) -> tuple[list[str], str]:
        rows = read_rows(t / "normals_only_eval" / "metrics.csv") or []
        shown = [f"{k} {r[k]}" for r in rows for k in ("auc", "precision", "recall")
                 if finite(r[k])]  # fmt: skip
        return (["lost: no metrics.csv"] * (not rows) + shown[:2]), "auc, precision, recall n/a"

    def unreadable(run: Run) -> tuple[list[str], str]:
        if as_root:
            return [], f"running as root, chmod 000 blocks no read (exit {run.rc}): not testable"
        named = "cannot list" in run.text or (run.rc != 0 and bool(run.error()))
        return ([] if named else ["unreadable folder not named"]), "named"

    tasks: list[Task] = []
    # fmt: off
    for name, argv, expect, expected, checks, *extra in [
        ("missing root (train.py)", tr("--data.root", nope), "error", err, (says("nope"),)),
        ("missing root (evaluate.py)", b.evaluate("--data.root", nope, "--out", t / "o"), "error",
         err, (says("nope"),)),
        ("missing root (compare)", cmp("--data.root", nope), "error", err, (says("nope"),)),
        ("empty root", tr("--data.root", t / "empty_root"), "error", err, (says("empty_root"),)),
        ("root is a regular file", tr("--data.root", t / "afile"), "error", err, (says("afile"),)),
        ("unknown layout (loose clips)", tr("--data.root", t / "unknown_layout"), "error",
         "error naming the layouts tried", (says("layout"),)),
        ("--data.layout nonsense", tr("--data.root", data, "--data.layout", "nonsense"), "error",
         err, (says("nonsense"),)),
        ("mistyped machine type (fna)", tr("--data.root", data, "--data.machine_type", "fna"),
         "error", "error listing the types", (says("fna", "valve"),)),
        ("mistyped machine id (id_99)", tr("--data.root", data, "--data.machine_id", "id_99"),
         "error", "error listing the ids", (says("id_99", "id_02"),)),
        ("mistyped machine type (compare)", cmp("--data.root", data, "--data.machine_type", "fna"),
         "error", err, (says("fna"),), True),
        ("unreadable folder (chmod 000 fan/train)", tr("--data.root", t / "locked_root"),
         "n/a" if as_root else "handled", "named, or an error", (unreadable,)),
        ("symlinked machine-type folder", b.train("--data.root", t / "linked_root",
         "--trainer.default_root_dir", linked), "handled", "followed: fan trained and tested",
         (exits(False), rows_ok(linked / "lightning_logs/version_0/test/scores.csv", 12))),
        ("predict: missing input file", b.predict(t / "no.wav", "--out", t / "o"), "error", err,
         (says("no.wav"),)),
        ("predict: folder without .wav files", b.predict(t / "no_wavs", "--out", t / "o"),
         "error", err, (says("no_wavs"),)),
        ("test set without anomalies (evaluate.py)", b.evaluate("--data.root", t / "normals_only",
         "--out", t / "normals_only_eval"), "handled", "metrics n/a", (exits(False), undefined),
         True),
        ("--data.channel -1", tr("--data.root", data, "--data.channel", "-1"), "error", err,
         (says("channel"),), True),
        ("--data.val_fraction 1.5", tr("--data.root", data, "--data.val_fraction", "1.5"),
         "error", err, (says("val_fraction"),), True),
    ]:
        tasks.append(case(b, g, name, argv, expect, expected, checks, extra=bool(extra)))
    # fmt: on
    return tasks


def config_tasks(b: Bench) -> list[Task]:
    import soundfile as sf

    t, data, g, two = b.tmp, b.data, "bad configs", b.tmp / "two_detectors.yaml"
    w = {k: t / f"witness_{k}" for k in ("model", "detector", "cb_compare", "cb_train", "cli")}
    popen = "{class_path: subprocess.Popen, init_args: {args: [touch, %s]}}"
    system = "trainer:\n  callbacks:\n  - {class_path: os.system, init_args: {command: touch %s}}\n"
    files = {name: t / f"{name}.yaml" for name in ("model", "detector", "cb_compare", "cb_train",
                                                  "gama", "dup", "empty")}  # fmt: skip
    for name, text in {
        "model": f"methods:\n  - {{name: evil, model: {popen % w['model']}}}\n",
        "detector": f"methods:\n  - {{name: evil, detector: {popen % w['detector']}}}\n",
        "cb_compare": system % w["cb_compare"] + TWO_DETECTORS,
        "cb_train": system % w["cb_train"],
        "gama": "methods:\n  - {name: lstm, model: {class_path: aad.models.LSTMAE, init_args: "
        "{threshold_method: gama}}}\n",
        "dup": TWO_DETECTORS + TWO_DETECTORS.splitlines()[1] + "\n",
        "empty": "methods: []\n",
    }.items():
        files[name].write_text(text)
    cli_model = '{"class_path": "subprocess.Popen", "init_args": {"args": ["touch", "%s"]}}'
    shutil.copytree(data / "fan" / "test", t / "multi_root" / "fan" / "test")
    shutil.copytree(data / "valve", t / "multi_root" / "valve")
    shutil.copytree(data, t / "multi_bad")
    clip = sf.read(str(data / "fan/test/normal_id_00_00000000.wav"))[0]
    write_kind("0.1 s clip", t / "multi_bad/fan/test/anomaly_id_00_99999999.wav", clip)
    multi, multi_cmp, bad_out = b.folder("multi_train"), b.folder("multi_compare"), t / "afile/x"
    multi_bad, compare_bad = b.folder("multi_bad"), b.folder("compare_bad")

    number = itertools.count()

    def tr(*args: object) -> list:
        return b.train("--data.root", data, "--data.machine_type", "fan", *args,
                       "--trainer.default_root_dir", b.folder(f"c{next(number)}"))  # fmt: skip

    def cmp(*args: object) -> list:
        return b.compare("--config", two, "--data.root", data, "--data.clip_seconds", "2",
                         "--out", b.folder(f"c{next(number)}"), *args)  # fmt: skip

    key, early, safe, upfront = "error naming the key", "error before training", \
        "clean error, nothing run", "error before any method"  # fmt: skip
    tasks: list[Task] = []
    # fmt: off
    for name, argv, expect, expected, checks, *extra in [
        ("train.py --data.foo 3", tr("--data.foo", "3"), "error", key, (says("foo"),)),
        ("train.py --embeding.mode flatten", tr("--embeding.mode", "flatten"), "error",
         key, (says("embeding"),)),
        ("compare --data.foo 3", cmp("--data.foo", "3"), "error", key, (says("foo"),)),
        ("compare --embeding.mode flatten", cmp("--embeding.mode", "flatten"), "error",
         key, (says("embeding"),)),
        ("train.py --data.clip_seconds -1", tr("--data.clip_seconds", "-1"), "error",
         early, (says("clip_seconds"), no_ckpt)),
        ("train.py --data.clip_seconds 0", tr("--data.clip_seconds", "0"), "error", early,
         (says("clip_seconds"), no_ckpt)),
        ("compare --data.clip_seconds -1", cmp("--data.clip_seconds", "-1"), "error",
         upfront, (says("clip_seconds"), no_work)),
        ("threshold_quantile 1.5", tr("--model.init_args.threshold_quantile", "1.5"),
         "error", early, (says("1.5"), no_ckpt)),
        ("threshold_method gama", tr("--model.init_args.threshold_method", "gama"),
         "error", early, (says("gama"), no_ckpt)),
        ("compare model with threshold_method gama", cmp("--config", files["gama"]),
         "error", upfront, (says("gama"), no_work), True),
        ("compare: two methods named alike", cmp("--config", files["dup"]), "error",
         upfront, (no_work,), True),
        ("compare: empty method list", cmp("--config", files["empty"]), "error", upfront,
         (no_work,), True),
        ("compare YAML: model class_path subprocess.Popen", cmp("--config",
         files["model"]), "error", safe, (absent(w["model"]),)),
        ("compare YAML: detector class_path subprocess.Popen", cmp("--config",
         files["detector"]), "error", safe, (absent(w["detector"]),)),
        ("compare YAML: callback class_path os.system", cmp("--config",
         files["cb_compare"]), "error", safe, (absent(w["cb_compare"]),)),
        ("train.py --config: callback class_path os.system", tr("--config",
         files["cb_train"]), "error", safe, (absent(w["cb_train"]),)),
        ("train.py --model class_path subprocess.Popen", tr("--model",
         cli_model % w["cli"]), "error", safe, (absent(w["cli"]),)),
        ("unwritable default_root_dir (train.py)", b.train("--data.root", data,
         "--trainer.default_root_dir", bad_out), "error", early, (says("afile"), no_work)),
        ("unwritable --out (compare)", cmp("--out", bad_out), "error", upfront,
         (says("afile"), no_work)),
        ("unwritable --out (evaluate.py)", b.evaluate("--data.root", data, "--out",
         bad_out), "error", "clean error", (says("afile"),)),
        ("unwritable --out (predict)", b.predict(data / "fan/test", "--out", bad_out),
         "error", "clean error", (says("afile"),)),
        ("multi-type train.py, fan has no training clips", b.train("--data.root",
         t / "multi_root", "--trainer.default_root_dir", multi), "handled",
         "fan a failure row, valve results, exit 1", (exits(True), says("Failed"),
         rows_ok(multi / "lightning_logs/valve/version_0/test/scores.csv", 12),
         rows_ok(multi / "lightning_logs/summary/version_0/scores.csv", 12, "valve"))),
        ("multi-type compare, fan has no training clips", b.compare("--config", two,
         "--data.root", t / "multi_root", "--data.clip_seconds", "2", "--out", multi_cmp),
         "handled", "fan failure rows, valve results, exit 1", (exits(True),
         rows_ok(multi_cmp / "failures.csv", 2, "fan", "group"),
         rows_ok(multi_cmp / "scores.csv", 24, "valve"))),
        ("multi-type train.py, a 0.1 s test clip in fan", b.train("--data.root", t / "multi_bad",
         "--trainer.default_root_dir", multi_bad), "handled", "a status row, valve results, "
         "exit 0 (no group failed)", (exits(False), rows_ok(multi_bad / "lightning_logs/fan/"
         "version_0/test/scores.csv", 12), rows_ok(multi_bad / "lightning_logs/summary/version_0/"
         "scores.csv", 12, "valve"))),
        ("compare, a 0.1 s test clip in fan", b.compare("--config", two, "--data.root",
         t / "multi_bad", "--data.clip_seconds", "2", "--out", compare_bad), "handled",
         "a status row, every result, exit 0", (exits(False), rows_ok(compare_bad / "scores.csv",
         24, "fan"), rows_ok(compare_bad / "scores.csv", 24, "valve"))),
    ]:
        tasks.append(case(b, g, name, argv, expect, expected, checks, extra=bool(extra)))
    # fmt: on
    return tasks


# ----------------------------------------------------------------------------- checkpoints
class Payload:
    """Pickles as a call to ``os.system``: what a hostile ``.ckpt`` carries."""

    def __init__(self, witness: Path) -> None:
        self.command = f"touch {shlex.quote(str(witness))}"

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def checkpoint_tasks(b: Bench) -> list[Task]:
    import copy

    import torch

    t, g, folder = b.tmp, "bad checkpoints", b.tmp / "ckpts"
    folder.mkdir()
    real, raw = torch.load(b.ckpt, map_location="cpu", weights_only=False), b.ckpt.read_bytes()

    def save(name: str, obj: object = None, **edits: object) -> Path:
        if obj is None:
            obj = copy.deepcopy(real)
            for key, value in edits.items():
                section, entry = key.split("__")
                obj[section][entry] = value
        torch.save(obj, folder / name)
        return folder / name

    def ev(ckpt: Path, *args: str) -> list:
        return b.evaluate("--data.root", b.data, "--out", b.folder(ckpt.name), *args, ckpt=ckpt)

    w = {k: t / f"witness_ckpt_{k}" for k in ("evaluate", "predict")}
    evil = {k: save(f"evil_{k}.ckpt", {"aad": Payload(path), "state_dict": {}})
            for k, path in w.items()}  # fmt: skip
    (folder / "random.ckpt").write_bytes(np.random.default_rng(0).bytes(65536))
    (folder / "truncated.ckpt").write_bytes(raw[: len(raw) // 2])
    (t / "no_ckpts").mkdir()
    safe = "clean error, nothing run"
    # fmt: off
    cases = [
        ("pickle calls os.system (evaluate.py)", ev(evil["evaluate"]), "error", safe,
         (absent(w["evaluate"]), says("evil_evaluate.ckpt"))),
        ("pickle calls os.system (predict)", b.predict(b.data / "fan/test", "--out",
         b.folder("evil_predict"), ckpt=evil["predict"]), "error", safe, (absent(w["predict"]),)),
        ("random bytes", ev(folder / "random.ckpt"), "error", "clean error", (says("random"),)),
        ("truncated (first half)", ev(folder / "truncated.ckpt"), "error", "clean error",
         (says("truncated.ckpt"),)),
        ("format version 1", ev(save("v1.ckpt", aad__format_version=1)), "error", "clean error",
         (says("format"),)),
        ("model class subprocess.Popen", ev(save("popen.ckpt",
         aad__model_class="subprocess.Popen")), "error", safe, (says("subprocess.Popen"),)),
        ("model class in aad, not a model", ev(save("notmodel.ckpt",
         aad__model_class="aad.checkpoints.CheckpointError")), "error", "clean error",
         (says("AnomalyModule"),)),
        ("torch.save of a plain dict", ev(save("plain.ckpt", {"weights": torch.zeros(3)})),
         "error", "clean error", (says("not an aad checkpoint"),)),
        ("hyperparameters that do not fit the weights", ev(save("shape.ckpt",
         hyper_parameters__hidden_size=32)), "error", "clean error", (says("shape.ckpt"),)),
        ("missing file", ev(t / "no_such.ckpt"), "error", "clean error", (says("no_such.ckpt"),)),
        ("folder holding no .ckpt", ev(t / "no_ckpts"), "error", "clean error",
         (says("no_ckpts"),)),
        ("fan checkpoint on valve data", ev(b.ckpt, "--data.machine_type", "valve"), "handled",
         "scored, with a note", (exits(False), note("fan", "valve"))),
    ]
    # fmt: on
    return [case(b, g, name, argv, *rest) for name, argv, *rest in cases]


# ----------------------------------------------------------------------------- multi-run cases
RESUME_TRAINER = """max_epochs: %d
deterministic: true
num_sanity_val_steps: 0
enable_progress_bar: false
enable_model_summary: false
callbacks:
  - class_path: lightning.pytorch.callbacks.ModelCheckpoint
    init_args: {monitor: val/loss, save_last: true, filename: "best-epoch{epoch:02d}",
                auto_insert_metric_name: false}
"""


def compare_five(b: Bench) -> list[Row]:
    """The default compare config on 5 training clips: every method must reach the table."""
    names = re.findall(r"^  - name: (\w+)", (REPO / "configs/compare.yaml").read_text(), re.M)
    home = b.folder("compare_five")
    run = b.run(b.compare("--data.root", b.tmp / "five", "--out", home), "compare_five", 600)
    got = {r["method"] for r in read_rows(home / "metrics.csv") or [] if finite(r.get("auc"))}
    missing = [n for n in names if n not in got]
    problems = [f"lost: no AUC for {', '.join(missing)}"] * bool(missing) + exits(False)(run)[0]
    return [judge(b, "compare", "5 training clips, default config", run, "handled",
                  f"all {len(names)} methods in the table", problems,
                  f"{len(got)} of {len(names)} methods have an AUC")]  # fmt: skip


def corrupt_cache(b: Bench) -> list[Row]:
    home = b.folder("corrupt_cache")
    runs, entries = [], []
    for i in (1, 2):
        runs.append(b.run(b.compare("--config", b.tmp / "two_detectors.yaml", "--data.root",
                                    b.data, "--data.clip_seconds", "2", "--data.machine_type",
                                    "fan", "--embedding.cache_dir", home / "cache", "--out",
                                    home / f"out{i}"), f"compare_cache_{i}"))  # fmt: skip
        if i == 1 and (entries := sorted((home / "cache/embeddings").glob("*.npy"))):
            entries[0].write_bytes(b"not an array " * 10)
    problems = [] if runs[0].rc == 0 and entries else [f"first run: exit {runs[0].rc}, no cache"]
    problems += [] if entries and entries[0].name in runs[1].text else ["entry not named"]
    problems += [f"{n} differs" for n in differing([home / "out1", home / "out2"])]
    found = f"{entries[0].name[:10]}... named; recomputed; same scores" if entries else ""
    problems += exits(False)(runs[1])[0]
    return [judge(b, "compare", "corrupt embedding cache entry", runs[1], "handled",
                  "named, recomputed, same table", problems, found)]  # fmt: skip


def kill_and_resume(b: Bench, epochs: int = 40) -> list[Row]:
    import torch

    home = b.folder("kill_resume")
    (home / "trainer.yaml").write_text(RESUME_TRAINER % epochs)
    argv = [str(a) for a in b.train("--data.root", b.data, "--data.machine_type", "fan",
            "--trainer", home / "trainer.yaml", "--trainer.default_root_dir", home)]  # fmt: skip
    last = home / "lightning_logs/version_0/checkpoints/last.ckpt"
    killed_run, alive = b.kill_when(argv, last.is_file, "kill_resume_1")
    name = f"train.py SIGKILLed after its first checkpoint, resumed ({epochs} epochs)"
    if not last.is_file():
        return [judge(b, "kill-and-resume", name, killed_run, "handled", "", ["no checkpoint"])]
    killed = torch.load(last, map_location="cpu", weights_only=False)
    epoch, step = int(killed["epoch"]), int(killed["global_step"])
    run = b.run([*argv, "--ckpt_path", last], "kill_resume_2", 600)
    finals = sorted(home.glob("lightning_logs/version_[1-9]*/checkpoints/last.ckpt"))
    final = torch.load(finals[-1], map_location="cpu", weights_only=False) if finals else {}
    steps = epochs * step // (epoch + 1)
    first = resumed_first_epoch(finals[-1].parents[1]) if finals else None
    problems = ([] if alive else ["training ended before the kill"]) + exits(False)(run)[0]
    problems += says("Restored all states")(run)[0]
    if (final.get("epoch"), final.get("global_step")) != (epochs - 1, steps):
        problems.append(f"final epoch/step {final.get('epoch')}/{final.get('global_step')}, "
                        f"expected {epochs - 1}/{steps}")  # fmt: skip
    problems += [f"resumed at epoch {first}, not {epoch + 1}"] if first not in (None, epoch + 1) \
        else []  # fmt: skip
    if not finals or not (finals[-1].parents[1] / "test/scores.csv").is_file():
        problems.append("lost: no test scores after resuming")
    found = (f"killed after epoch {epoch} (step {step}); the resumed run logged epochs "
             f"{first}-{final.get('epoch')}, final step {final.get('global_step')}")  # fmt: skip
    return [judge(b, "kill-and-resume", name, run, "handled", "finishes, epochs continue",
                  problems, found)]  # fmt: skip


def resumed_first_epoch(run_dir: Path) -> int | None:
    """The first ``epoch`` value a run logged to TensorBoard (None: not readable)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None
    events = EventAccumulator(str(run_dir))
    events.Reload()
    if "epoch" not in events.Tags().get("scalars", []):
        return None
    return int(min(e.value for e in events.Scalars("epoch")))


def synthetic_kill(b: Bench) -> list[Row]:
    home = b.folder("synthetic_kill")
    root, partial = home / "killed_set", home / "killed_set.partial"
    argv = [PY, "-m", "aad.data.synthetic", "--root", str(root)]

    def clips() -> int:
        return sum(1 for _ in partial.rglob("*.wav")) if partial.is_dir() else 0

    alive = b.kill_when(argv, lambda: clips() >= 20, "synthetic_kill")[1]
    written, left = clips(), root.exists()
    run = b.run([*argv, "--machine-types", "fan", "--duration", "1"], "synthetic_kill_rerun")
    problems = ([] if alive else ["generation ended before the kill"]) + exits(False)(run)[0]
    problems += [f"{root.name} left after the kill"] * left
    problems += [] if root.is_dir() and not partial.exists() else ["the rerun left no clean set"]
    found = (f"killed with {written} clips written: no {root.name}; the rerun cleared "
             f"{partial.name} and wrote the set")  # fmt: skip
    return [judge(b, "kill-and-resume", "python -m aad.data.synthetic SIGKILLed midway, rerun",
                  run, "handled", "no root left; a rerun completes", problems, found)]  # fmt: skip


def differing(folders: list[Path], names=("scores.csv", "metrics.csv", "metrics.md")) -> list:
    """Files missing from either folder or differing byte for byte."""
    pairs = [[folder / name for folder in folders] for name in names]
    return [a.name for a, c in pairs if not (a.is_file() and c.is_file())
            or a.read_bytes() != c.read_bytes()]  # fmt: skip


def determinism(b: Bench, tool: str) -> list[Row]:
    home = b.folder(f"determinism_{tool}")
    config = home / "methods.yaml"
    config.write_text(TWO_DETECTORS + "  - {name: lstm_ae, model: {class_path: aad.models.LSTMAE},"
                      " trainer: {max_epochs: 2}}\n")  # fmt: skip
    runs, outs = [], []
    for i in (1, 2):
        if tool == "train.py":
            fan, root = ("--data.machine_type", "fan"), home / f"{i}"
            argv = b.train("--data.root", b.data, *fan, "--trainer.max_epochs", "3",
                           "--trainer.default_root_dir", root)  # fmt: skip
            outs.append(home / f"{i}" / "lightning_logs/version_0/test")
        else:
            argv = b.compare("--config", config, "--data.root", b.data, "--embedding"
                             ".cache_dir", "null", "--data.clip_seconds", "2", "--out",
                             home / f"{i}")  # fmt: skip
            outs.append(home / f"{i}")
        runs.append(b.run(argv, f"determinism_{tool}_{i}", 600))
    problems = [f"{name} differs" for name in differing(outs)]
    tables = [[x for x in r.out.splitlines() if x.startswith("|")] for r in runs]
    problems += ([] if tables[0] == tables[1] else ["printed table differs"]) + [
        f"run {i}: exit {r.rc}" for i, r in enumerate(runs, 1) if r.rc != 0]  # fmt: skip
    what = "3 epochs, seed 0" if tool == "train.py" else "IF, kNN, LSTM-AE 2 epochs; no cache"
    same = "differ" if problems else "identical"
    return [judge(b, "determinism", f"{tool} twice ({what})", runs[1], "handled",
                  "identical bytes", problems, f"scores.csv, metrics.csv, metrics.md and the "
                  f"printed table {same}")]  # fmt: skip


def compare_killed(b: Bench) -> list[Row]:
    """SIGKILL compare once its first group is written: that group's results must stay."""
    home = b.folder("compare_killed")
    config = home / "methods.yaml"
    config.write_text(TWO_DETECTORS + "  - {name: lstm_ae, model: {class_path: aad.models.LSTMAE},"
                      " trainer: {max_epochs: 5}}\n")  # fmt: skip
    argv = b.compare("--config", config, "--data.root", b.data, "--data.clip_seconds", "2",
                     "--out", home / "out")  # fmt: skip
    run, alive = b.kill_when(argv, (home / "out/metrics.md").is_file, "compare_killed")
    rows = [r for r in read_rows(home / "out/scores.csv") or [] if r["status"] == "ok"]
    types = sorted({r["machine_type"] for r in rows})
    problems = (
        ([] if alive else ["compare ended before the kill"])
        + ["lost: no scores"] * (not rows)
        + ["lost: no metrics.csv"] * (not (home / "out/metrics.csv").is_file())
    )
    return [judge(b, "kill-and-resume", "compare SIGKILLed after its first machine type", run,
                  "handled", "finished types on disk", problems,
                  f"{len(rows)} scores of {', '.join(types)} kept")]  # fmt: skip


def shared_root(b: Bench) -> list[Row]:
    """Two multi-type train.py runs sharing one default_root_dir keep both summaries."""
    home = b.folder("shared_root")
    runs = [b.run(b.train("--data.root", b.data, "--trainer.default_root_dir", home),
                  f"shared_root_{i}") for i in (1, 2)]  # fmt: skip
    found = sorted(home.glob("lightning_logs/summary/*/scores.csv"))
    problems = [f"run {i}: exit {r.rc}" for i, r in enumerate(runs, 1) if r.rc != 0]
    problems += [] if len(found) == 2 else [f"lost: {len(found)} summaries for 2 runs"]
    return [judge(b, "bad paths", "two train.py runs sharing one default_root_dir", runs[1],
                  "handled", "two summaries", problems,
                  ", ".join(str(p.parent.relative_to(home)) for p in found))]  # fmt: skip


def sequence_tasks(b: Bench) -> list[Task]:
    tasks = [lambda: compare_five(b), lambda: corrupt_cache(b), lambda: kill_and_resume(b),
             lambda: synthetic_kill(b), lambda: compare_killed(b),
             lambda: determinism(b, "train.py"), lambda: determinism(b, "compare")]  # fmt: skip
    return tasks + ([] if b.quick else [lambda: shared_root(b)])


# ----------------------------------------------------------------------------- report
def cell(value: object) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def write_report(rows: list[Row], out: Path, facts: str, quick: bool) -> str:
    out.mkdir(parents=True, exist_ok=True)
    with (out / "reliability.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, FIELDS)
        writer.writeheader()
        writer.writerows({k: v for k, v in asdict(r).items() if k in FIELDS} for r in rows)
    count = {v: sum(r.verdict == v for r in rows) for v in VERDICTS}
    lost = sum(any(p.startswith("lost") for p in r.problems) for r in rows)
    broken = f", {count['harness error']} HARNESS ERRORS" if count["harness error"] else ""
    totals = (f"{len(rows)} cases: {count['clean error']} clean errors, "
              f"{count['handled']} handled, {count['BUG']} BUG, {count['n/a']} n/a{broken}; "
              f"results lost in {lost}")  # fmt: skip
    shown = VERDICTS if count["harness error"] else VERDICTS[:-1]
    lines = ["# aad reliability: hostile inputs, killed runs, determinism", "", facts, "",
             f"**{totals}.**", "", "| group | cases | " + " | ".join(shown) + " |",
             "|---|---|" + "---|" * len(shown)]  # fmt: skip
    for group in dict.fromkeys(r.group for r in rows):
        mine = [r.verdict for r in rows if r.group == group]
        counts = " | ".join(str(mine.count(v)) for v in shown)
        lines.append(f"| {group} | {len(mine)} | {counts} |")
    lines += ["", f"`[tiny]` = `{shlex.join(TINY)}`; `$TMP`: the temporary folder; each case's "
              "output is in `logs/`.", "", "| # | group | case | command | exit | traceback | "
              "expected | found | verdict | s |", "|---" * 10 + "|"]  # fmt: skip
    lines += [f"| {r.id} | {cell(r.group)} | {cell(r.case)} | `{cell(r.command)}` | {r.exit} | "
              f"{r.traceback} | {cell(r.expected)} | {cell(r.found)} | **{r.verdict}** | "
              f"{r.seconds} |" for r in rows]  # fmt: skip
    lines += ["", "Reproduce: `python benchmarks/reliability.py" + " --quick" * quick + "`."]
    (out / "reliability.md").write_text("\n".join(lines) + "\n")
    return totals


def safely(task: Task, out: Path) -> list[Row]:
    """A harness failure becomes a row too (its traceback in ``logs/``): one broken case never
    loses the others."""
    try:
        return task()
    except Exception as error:  # noqa: BLE001
        name = getattr(task, "__qualname__", "task").replace(".<locals>", "")
        log = out / "logs" / f"harness_{_slug(name)}_{id(task):x}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(format_exc())
        return [Row(0, "harness", name, "", "", "", "", f"{error!r}; see logs/{log.name}",
                    "harness error", 0.0, ["harness"])]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    import platform

    import torch

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])  # fmt: skip
    parser.add_argument("--out", default="results/reliability", help="output folder")
    parser.add_argument("--quick", action="store_true", help="all bad audio in one folder per "
                        "command, no extra variants (about half the time)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2, help="cases run at a time")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(REPO))  # this checkout's aad, as the subprocesses get (PYTHONPATH)
    out, start = Path(args.out), time.perf_counter()
    shutil.rmtree(out / "logs", ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix="aad-reliability-"))
    try:
        bench = Bench(tmp, out, args.quick)
        print(f"[reliability] preparing data and a tiny model in {tmp}", flush=True)
        bench.prepare()
        heavy = sequence_tasks(bench)
        tasks = [*audio_tasks(bench), *path_tasks(bench), *config_tasks(bench),
                 *checkpoint_tasks(bench), *heavy]  # fmt: skip
        tasks = [t for t in tasks if not (args.quick and getattr(t, "extra", False))]
        print(f"[reliability] {len(tasks)} tasks, {args.jobs} at a time", flush=True)
        with ThreadPoolExecutor(args.jobs) as pool:  # the long multi-run cases first
            order = sorted(range(len(tasks)), key=lambda i: tasks[i] not in heavy)
            futures = {i: pool.submit(safely, tasks[i], out) for i in order}
            rows = [row for i in range(len(tasks)) for row in futures[i].result()]
    finally:
        if (tmp / "locked_root/fan/train").exists():
            (tmp / "locked_root/fan/train").chmod(0o755)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    for number, row in enumerate(rows, 1):
        row.id = number
    seconds, cpu = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
    facts = (f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/reliability.py"
             f"{' --quick' * args.quick}` ({args.jobs} cases at a time) on {os.cpu_count()} CPUs "
             f"(load average {os.getloadavg()[0]:.1f} at the end), Python "
             f"{platform.python_version()}, torch {torch.__version__}: {seconds / 60:.1f} min wall,"
             f" {(cpu.ru_utime + cpu.ru_stime) / 60:.1f} min CPU in the subprocesses.")  # fmt: skip
    totals = write_report(rows, out, facts, args.quick)
    print(f"[reliability] {totals}; {seconds:.0f} s -> {out}/reliability.md")
    for row in rows:
        if row.verdict not in ("clean error", "handled"):
            print(f"  {row.verdict}: {row.group} / {row.case}: {row.found}")
    return 1 if any(r.verdict in ("BUG", "harness error") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
