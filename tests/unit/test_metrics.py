"""Metrics: DCASE pAUC, harmonic means, per type/id tables, domain AUCs (DCASE 2022+)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import hmean
from sklearn.metrics import average_precision_score, f1_score, precision_score, roc_auc_score

from aad.metrics import binary_metrics, decision_metrics, harmonic_mean, metrics_table, to_markdown


def _scores(seed: int = 0, n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(n), np.ones(n)].astype(int)
    scores = rng.normal(size=2 * n) + labels * 1.2
    return labels, scores


def test_binary_metrics_match_sklearn_and_dcase_pauc() -> None:
    labels, scores = _scores()
    result = binary_metrics(np.r_[labels, -1], np.r_[scores, 99.0])  # unknown rows ignored
    assert result["auc"] == pytest.approx(roc_auc_score(labels, scores))
    assert result["pauc"] == pytest.approx(roc_auc_score(labels, scores, max_fpr=0.1))
    assert result["ap"] == pytest.approx(average_precision_score(labels, scores))


def test_one_class_gives_nan_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="AUC undefined: 3 normal and 0 anomalous"):
        result = binary_metrics([0, 0, 0], [0.1, 0.2, 0.3])
    assert all(math.isnan(v) for v in result.values())
    with pytest.raises(ValueError, match="NaN or Inf"):
        binary_metrics([0, 1], [0.1, math.nan])


def test_harmonic_mean() -> None:
    assert harmonic_mean([0.5, 1.0]) == pytest.approx(hmean([0.5, 1.0]))
    assert math.isnan(harmonic_mean([0.5, math.nan])) and math.isnan(harmonic_mean([0.0, 1.0]))


def test_table_has_ids_then_mean_and_hmean_rows() -> None:
    frames = []
    for i, (machine_type, machine_id) in enumerate(
        [("fan", "id_00"), ("fan", "id_02"), ("pump", "id_00")]
    ):
        labels, scores = _scores(seed=i)
        frames.append(pd.DataFrame({"machine_type": machine_type, "machine_id": machine_id,
                                    "target": labels, "score": scores}))  # fmt: skip
    table = metrics_table(pd.concat(frames))
    keys = list(zip(table["machine_type"], table["machine_id"], strict=True))
    assert keys == [("fan", "id_00"), ("fan", "id_02"), ("pump", "id_00"),
                    ("fan", "mean"), ("fan", "hmean"), ("pump", "mean"), ("pump", "hmean"),
                    ("ALL", "mean"), ("ALL", "hmean")]  # fmt: skip
    per_id = table.iloc[:3]["auc"].to_numpy()
    assert table.iloc[4]["auc"] == pytest.approx(hmean(per_id[:2]))
    assert table.iloc[8]["auc"] == pytest.approx(hmean(per_id))
    assert table.iloc[7]["n_anomaly"] == 120
    assert "| fan | hmean |" in to_markdown(table)


def test_domain_aucs_pair_each_domains_normals_with_every_anomaly() -> None:
    labels, scores = _scores(n=30)
    domains = np.array(["source", "target"] * 30)
    frame = pd.DataFrame({"machine_type": "fan", "machine_id": "section_00", "target": labels,
                          "score": scores, "domain": domains})  # fmt: skip
    row = metrics_table(frame).iloc[0]
    for domain in ("source", "target"):
        chosen = (labels == 1) | (domains == domain)
        expected = roc_auc_score(labels[chosen], scores[chosen])
        assert row[f"auc_{domain}"] == pytest.approx(expected)
    assert row["pauc"] == pytest.approx(roc_auc_score(labels, scores, max_fpr=0.1))
    no_domains = metrics_table(frame.assign(domain=""))
    assert "auc_source" not in no_domains.columns


def test_decision_metrics_match_sklearn_and_are_nan_when_undefined() -> None:
    labels = np.array([0, 0, 1, 1, 1, -1])
    decisions = np.array([1, 0, 1, 0, 1, 1])
    result = decision_metrics(labels, decisions)
    assert result["precision"] == pytest.approx(precision_score(labels[:5], decisions[:5]))
    assert result["recall"] == pytest.approx(2 / 3)
    assert result["f1"] == pytest.approx(f1_score(labels[:5], decisions[:5]))
    no_anomalies = decision_metrics(np.array([0, 0]), np.array([1, 0]))
    assert all(math.isnan(v) for v in no_anomalies.values())  # never 0
    nothing_flagged = decision_metrics(np.array([0, 1]), np.array([0, 0]))
    assert math.isnan(nothing_flagged["precision"]) and nothing_flagged["recall"] == 0.0


def test_table_measures_only_scored_clips() -> None:
    labels, scores = _scores(n=10)
    frame = pd.DataFrame({"machine_type": "fan", "machine_id": "id_00", "target": labels,
                          "score": scores, "decision": (scores > 0.6).astype(int),
                          "status": "ok"})  # fmt: skip
    broken = frame.iloc[:3].assign(score=math.nan, status="error: truncated", decision=-1)
    table = metrics_table(pd.concat([frame, broken], ignore_index=True))
    assert table.iloc[0]["n_normal"] == 10 and table.iloc[0]["auc"] == pytest.approx(
        roc_auc_score(labels, scores))  # fmt: skip
    assert table.iloc[0]["precision"] == pytest.approx(
        precision_score(labels, (scores > 0.6).astype(int)))  # fmt: skip
    assert metrics_table(broken).empty
    with pytest.raises(ValueError, match=r"clip_scores lacks columns \['score'\]"):
        metrics_table(frame.drop(columns="score"))
    one_class = metrics_table(frame[frame["target"] == 0])
    assert one_class[["auc", "recall", "f1"]].isna().all().all()
    assert "| fan | id_00 | 10 | 0 | n/a |" in to_markdown(one_class)
