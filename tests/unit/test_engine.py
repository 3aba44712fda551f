"""The engine: run_groups goes on past failures, the per-clip table, method specs and methods."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from aad.data.datamodule import MachineSoundDataModule
from aad.data.manifest import ClipRecord
from aad.data.splits import Group
from aad.detectors import KNNDetector
from aad.embeddings import EmbeddingConfig
from aad.engine import (
    SCORE_COLUMNS,
    DetectorMethod,
    MethodSpec,
    ModelMethod,
    clip_table,
    failure_row,
    run_groups,
)
from aad.engine.methods import build_methods
from aad.engine.results import scored
from aad.metrics import binary_metrics
from aad.models import LSTMAE

SMALL_EMBEDDING = {"features": ["mel"], "mel": {"n_mels": 16}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def data(synthetic_root: Path) -> MachineSoundDataModule:
    return MachineSoundDataModule(root=str(synthetic_root), clip_seconds=2.0, batch_size=4,
                                  machine_id="id_00")  # fmt: skip


@dataclass
class FakeMethod:
    """Scores each clip by its label (anomalies 1, normals 0, plus a small rank)."""

    name: str
    fail: str = ""
    fitted: list[str] = field(default_factory=list)
    threshold: float = 0.5

    def fit(self, data: MachineSoundDataModule) -> None:
        if self.fail == "fit":
            raise ValueError(f"cannot fit\n  {self.name}")
        self.fitted.append(data.group.label)

    def score(self, data: MachineSoundDataModule, records) -> np.ndarray:
        if self.fail == "score":
            raise RuntimeError("scoring broke")
        return np.array([r.target + 0.01 * i for i, r in enumerate(records)])

    def describe(self) -> str:
        return f"fake {self.name}"


def test_run_groups_turns_a_failing_method_into_a_row_and_runs_the_rest(data) -> None:
    groups = data.groups()
    first, broken, scoring, last = (FakeMethod("first"), FakeMethod("broken", "fit"),
                                    FakeMethod("scoring", "score"), FakeMethod("last"))  # fmt: skip
    seen = []
    result = run_groups(groups, data, lambda group: [first, broken, scoring, last],
                        after_group=lambda r: seen.append(len(r.clip_scores)))  # fmt: skip
    assert first.fitted == last.fitted == ["fan", "valve"]
    assert result.failures.to_dict("records") == [
        {"method": "broken", "group": "fan", "reason": "ValueError: cannot fit broken"},
        {"method": "scoring", "group": "fan", "reason": "RuntimeError: scoring broke"},
        {"method": "broken", "group": "valve", "reason": "ValueError: cannot fit broken"},
        {"method": "scoring", "group": "valve", "reason": "RuntimeError: scoring broke"},
    ]
    scores = result.clip_scores
    assert list(scores.columns) == list(SCORE_COLUMNS) and seen == [24, 48]
    assert list(dict.fromkeys(zip(scores["method"], scores["machine_type"], strict=True))) == [
        ("first", "fan"), ("last", "fan"), ("first", "valve"), ("last", "valve")]  # fmt: skip
    assert set(scores["status"]) == {"ok"} and set(scores["decision"]) == {0, 1}
    assert (scores["decision"] == scores["target"]).all()
    assert sorted(result.methods) == [("first", "fan"), ("first", "valve"),
                                      ("last", "fan"), ("last", "valve")]  # fmt: skip
    run = result.runs.iloc[0]
    assert (run["method"], run["group"], run["settings"], run["n_train"], run["n_test"]) == (
        "first", "fan", "fake first", 12, 12)  # fmt: skip


def test_a_group_whose_methods_cannot_be_built_is_a_row(data) -> None:
    def build(group: Group) -> list[FakeMethod]:
        if group.label == "fan":
            raise ValueError("no such detector")
        return [FakeMethod("only")]

    result = run_groups(data.groups(), data, build)
    assert result.failures.to_dict("records") == [
        {"method": "*", "group": "fan", "reason": "ValueError: no such detector"}]  # fmt: skip
    assert set(result.clip_scores["machine_type"]) == {"valve"}


def test_skipped_test_clips_get_status_rows_and_fit_only_runs_score_nothing(data) -> None:
    (fan, _) = data.groups()
    broken = ClipRecord("/gone/anomaly_id_00_00000099.wav", "dcase2020", "fan", "id_00", "test",
                        "anomaly")  # fmt: skip
    group = Group(fan.machine_type, None, fan.train, fan.val, fan.test, skipped=[
        (broken, "truncated (decoded 10 of 20 frames)")])  # fmt: skip
    result = run_groups([group], data, lambda g: [FakeMethod("m")])
    rows = result.clip_scores
    assert len(rows) == 13 and rows["path"].iloc[-1] == broken.path
    last = rows.iloc[-1]
    assert last["status"] == "error: truncated (decoded 10 of 20 frames)"
    assert math.isnan(last["score"]) and last["decision"] == -1
    assert len(scored(rows)) == 12
    method = FakeMethod("m")
    fit_only = run_groups([group], data, lambda g: [method], evaluate=False)
    assert method.fitted == ["fan"] and len(fit_only.clip_scores) == 0
    assert fit_only.runs["method"].tolist() == ["m"] and len(fit_only.failures) == 0


class _BrokenTrainer:
    def fit(self, *args, **kwargs) -> None:
        raise RuntimeError("CUDA out of memory")


def test_a_detector_on_a_failed_models_latent_code_fails_and_the_rest_run(data) -> None:
    embedding = EmbeddingConfig(features=SMALL_EMBEDDING, cache_dir=None, device="cpu")

    def build(group: Group) -> list:
        model = ModelMethod("ae", LSTMAE(score="mean", features=SMALL_EMBEDDING), _BrokenTrainer())
        return [DetectorMethod("knn_latent", KNNDetector(), embedding, latent=model),
                DetectorMethod("knn", KNNDetector(), embedding), model]  # fmt: skip

    (fan, _) = data.groups()
    result = run_groups([fan], data, build)
    assert result.failures.to_dict("records") == [
        {"method": "ae", "group": "fan", "reason": "RuntimeError: CUDA out of memory"},
        {"method": "knn_latent", "group": "fan",
         "reason": "RuntimeError: its latent model 'ae' failed"},
    ]  # fmt: skip
    rows = result.clip_scores
    assert set(rows["method"]) == {"knn"} and len(rows) == 12
    auc = binary_metrics(rows["target"], rows["score"])["auc"]
    assert auc > 0.8, auc  # kNN on log-mel statistics separates the synthetic faults
    assert math.isfinite(result.methods[("knn", "fan")].threshold)


def test_model_method_scores_follow_the_records(data) -> None:
    torch.manual_seed(0)
    method = ModelMethod(
        "ae", LSTMAE(score="mean", features=SMALL_EMBEDDING, normalize=False), device="cpu"
    )
    (fan, _) = data.groups()
    bound = data.for_group(fan)
    method.fit(bound)  # no trainer: a model loaded from a checkpoint is already trained
    records = fan.test[:5]
    forward = method.score(bound, records)
    backward = method.score(bound, records[::-1])
    np.testing.assert_array_equal(backward, forward[::-1])
    assert method.describe() == "LSTMAE (score mean)" and math.isnan(method.threshold)


def test_clip_table() -> None:
    records = [ClipRecord(f"/d/{label}_{i}.wav", "dcase2020", "fan", "id_00", "test", label,
                          domain)  # fmt: skip
               for i, (label, domain) in enumerate([("normal", "source"), ("anomaly", "target"),
                                                    ("anomaly", ""), ("normal", "")])]  # fmt: skip
    table = clip_table(records, [0.2, 0.9, math.nan, math.inf], 0.5, method="m")
    assert list(table.columns) == list(SCORE_COLUMNS)
    assert table["status"].tolist() == ["ok", "ok", "error: non-finite score",
                                        "error: non-finite score"]  # fmt: skip
    assert table["decision"].tolist() == [0, 1, -1, -1]
    assert table["target"].tolist() == [0, 1, 1, 0] and table["domain"].tolist()[:2] == [
        "source", "target"]  # fmt: skip
    given = clip_table(records[:2], [math.nan, 0.7], 0.5, status=["error: truncated", "ok"])
    assert given["status"].tolist() == ["error: truncated", "ok"]
    assert given["decision"].tolist() == [-1, 1]
    no_threshold = clip_table(records[:2], [0.2, 0.9], math.nan)
    assert no_threshold["decision"].tolist() == [-1, -1]  # no threshold: no decision (n/a)
    with pytest.raises(ValueError, match="3 scores for 4 clips"):
        clip_table(records, [0.1, 0.2, 0.3], 0.5)
    assert failure_row("m", "fan/id_00", KeyError("x")) == {
        "method": "m", "group": "fan/id_00", "reason": "KeyError: 'x'"}  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({}, "give exactly one of detector or model"),
     ({"detector": "knn", "model": "ae"}, "give exactly one of detector or model"),
     ({"model": "ae", "latent_model": "x"}, "embedding/latent_model are for detectors"),
     ({"model": "ae", "embedding": {"mode": "flatten"}}, "embedding/latent_model are for"),
     ({"detector": "knn", "trainer": {"max_epochs": 1}}, "trainer/batch_size are for models"),
     ({"model": "ae", "batch_size": 0}, "batch_size must be >= 1")],
)  # fmt: skip
def test_method_spec_is_checked(kwargs, message) -> None:
    objects = {"detector": KNNDetector(), "model": LSTMAE(score="mean", features=SMALL_EMBEDDING)}
    kwargs = {k: objects[k] if k in objects else v for k, v in kwargs.items()}
    with pytest.raises(ValueError, match=f"method 'x': {message}"):
        MethodSpec("x", **kwargs)


def test_build_methods_links_latent_models_and_merges_embeddings() -> None:
    model = LSTMAE(score="mean", features=SMALL_EMBEDDING)
    specs = [MethodSpec("knn_latent", detector=KNNDetector(), latent_model="ae"),
             MethodSpec("ae", model=model, batch_size=2),
             MethodSpec("flat", detector=KNNDetector(), embedding={"mode": "flatten"})]  # fmt: skip
    trainers = []
    methods = build_methods(specs, EmbeddingConfig(), lambda spec: trainers.append(spec.name))
    assert [m.name for m in methods] == ["knn_latent", "ae", "flat"] and trainers == ["ae"]
    assert methods[0].latent is methods[1] and methods[1].batch_size == 2
    assert methods[2].embedding.mode == "flatten" and methods[0].embedding.mode == "pooled"
    with pytest.raises(ValueError, match=r"latent_model 'nope' is not a model method .*\['ae'\]"):
        build_methods([specs[1], MethodSpec("k", detector=KNNDetector(), latent_model="nope")],
                      EmbeddingConfig(), lambda spec: None)  # fmt: skip
    with pytest.raises(ValueError, match=r"unknown embedding settings \['pooling'\]"):
        EmbeddingConfig().merged({"pooling": "max"})
