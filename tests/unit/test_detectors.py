"""The detector contract: sklearn parity, sign, thresholds, bad input, registry."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from sklearn.covariance import EmpiricalCovariance, LedoitWolf
from sklearn.ensemble import IsolationForest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import MinMaxScaler, StandardScaler
from sklearn.svm import OneClassSVM

from aad.detectors import (
    DETECTORS,
    FeatureSignatureError,
    KNNDetector,
    build_detector,
    detector_from_spec,
)
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE, fit_threshold

SMALL = {"lof": {"n_neighbors": 5}, "knn": {"n_neighbors": 3}}
CLASSICAL = sorted(set(DETECTORS) - {"pyod"})  # pyod: tests/unit/test_detectors_pyod.py


def make_data(n_train: int = 120, n_test: int = 40, dim: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    train = rng.normal(size=(n_train, dim)) * np.linspace(0.5, 3.0, dim) + 10.0
    test_normal = rng.normal(size=(n_test, dim)) * np.linspace(0.5, 3.0, dim) + 10.0
    test_anomaly = test_normal + 2.5 * np.linspace(0.5, 3.0, dim)
    test = np.vstack([test_normal, test_anomaly])
    labels = np.r_[np.zeros(n_test), np.ones(n_test)]
    return train, test, labels


@pytest.fixture(scope="module")
def data():
    return make_data()


def scaled(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scaler = StandardScaler().fit(train)
    return scaler.transform(train), scaler.transform(test)


# -- parity with scikit-learn (sign flipped once) -------------------------------------------
def test_isolation_forest_is_negated_sklearn_score_samples(data):
    train, test, _ = data
    ours = build_detector("isolation_forest", n_estimators=50, random_state=3).fit(train)
    train_s, test_s = scaled(train, test)
    reference = IsolationForest(n_estimators=50, random_state=3).fit(train_s)
    np.testing.assert_allclose(ours.decision_function(test), -reference.score_samples(test_s))
    np.testing.assert_allclose(ours.decision_scores_, -reference.score_samples(train_s))


def test_ocsvm_is_negated_sklearn_score_samples(data):
    train, test, _ = data
    ours = build_detector("ocsvm", nu=0.2, gamma=0.05).fit(train)
    train_s, test_s = scaled(train, test)
    reference = OneClassSVM(nu=0.2, gamma=0.05).fit(train_s)
    np.testing.assert_allclose(
        ours.decision_function(test), -reference.score_samples(test_s), rtol=1e-6
    )


def test_lof_is_negated_sklearn_novelty_score_samples(data):
    train, test, _ = data
    ours = build_detector("lof", n_neighbors=7).fit(train)
    train_s, test_s = scaled(train, test)
    reference = LocalOutlierFactor(n_neighbors=7, novelty=True).fit(train_s)
    np.testing.assert_allclose(ours.decision_function(test), -reference.score_samples(test_s))
    np.testing.assert_allclose(ours.decision_scores_, -reference.negative_outlier_factor_)


def test_gmm_is_negative_log_likelihood(data):
    train, test, _ = data
    ours = build_detector("gmm", n_components=2, reg_covar=1e-4, random_state=1).fit(train)
    train_s, test_s = scaled(train, test)
    reference = GaussianMixture(2, reg_covar=1e-4, random_state=1, max_iter=200).fit(train_s)
    np.testing.assert_allclose(ours.decision_function(test), -reference.score_samples(test_s))
    assert ours.n_components_ == 2 and ours.describe() == "gmm (2 components, full)"


@pytest.mark.parametrize(
    ("estimator", "reference"), [("ledoit_wolf", LedoitWolf), ("empirical", EmpiricalCovariance)]
)
def test_mahalanobis_matches_sklearn(data, estimator, reference):
    train, test, _ = data
    ours = build_detector("mahalanobis", estimator=estimator).fit(train)
    train_s, test_s = scaled(train, test)
    expected = reference().fit(train_s).mahalanobis(test_s)
    np.testing.assert_allclose(ours.decision_function(test), expected, rtol=1e-8)


@pytest.mark.parametrize("method", ["mean", "max"])
def test_knn_distances_match_brute_force(data, method):
    train, test, _ = data
    ours = KNNDetector(n_neighbors=4, method=method).fit(train)
    train_s, test_s = scaled(train, test)
    reduce = np.mean if method == "mean" else np.max
    dist = np.linalg.norm(test_s[:, None, :] - train_s[None, :, :], axis=2)
    expected = reduce(np.sort(dist, axis=1)[:, :4], axis=1)
    np.testing.assert_allclose(ours.decision_function(test), expected, rtol=1e-8)
    # training scores leave each point out of its own neighbourhood
    self_dist = np.linalg.norm(train_s[:, None, :] - train_s[None, :, :], axis=2)
    np.fill_diagonal(self_dist, np.inf)
    expected_train = reduce(np.sort(self_dist, axis=1)[:, :4], axis=1)
    np.testing.assert_allclose(ours.decision_scores_, expected_train, rtol=1e-8)
    assert ours.n_neighbors_ == 4


def test_minmax_scaling_as_the_study(data):
    train, test, _ = data
    train = train.copy()
    train[:, 1] = 3.0
    ours = build_detector("lof", n_neighbors=5, scale="minmax").fit(train)
    scaler = MinMaxScaler(feature_range=(-5, 5)).fit(train)
    reference = LocalOutlierFactor(n_neighbors=5, novelty=True).fit(scaler.transform(train))
    np.testing.assert_allclose(ours.transform(test), scaler.transform(test))
    np.testing.assert_allclose(
        ours.decision_function(test), -reference.score_samples(scaler.transform(test))
    )
    assert ours.describe() == "lof (k=5, scale=minmax)"


def test_no_scaling_sees_raw_embeddings(data):
    train, test, _ = data
    ours = build_detector("mahalanobis", estimator="empirical", scale=False).fit(train)
    np.testing.assert_array_equal(ours.transform(test), test)
    expected = EmpiricalCovariance().fit(train).mahalanobis(test)
    np.testing.assert_allclose(ours.decision_function(test), expected, rtol=1e-8)


# -- contract shared by every detector -----------------------------------------------------
@pytest.mark.parametrize("name", CLASSICAL)
def test_higher_is_more_anomalous_and_threshold_from_training(data, name):
    train, test, labels = data
    detector = build_detector(name, **SMALL.get(name, {}))
    assert detector.fit(train) is detector
    scores = detector.decision_function(test)
    assert scores.shape == (len(test),) and scores.dtype == np.float64
    assert roc_auc_score(labels, scores) > 0.9, name
    expected = fit_threshold(detector.decision_scores_, DEFAULT_METHOD, DEFAULT_QUANTILE)
    assert detector.threshold_ == expected
    np.testing.assert_array_equal(detector.predict(test), (scores > detector.threshold_))
    assert detector.predict(test).dtype == np.int64


@pytest.mark.parametrize("name", CLASSICAL)
def test_percentile_threshold_is_the_old_contamination_rule(data, name):
    """``threshold_method="percentile"``, quantile 1 - c == the former ``contamination=c``."""
    train = data[0]
    params = {**SMALL.get(name, {}), "threshold_method": "percentile", "threshold_quantile": 0.95}
    detector = build_detector(name, **params).fit(train)
    assert detector.threshold_ == pytest.approx(np.quantile(detector.decision_scores_, 0.95))
    assert np.mean(detector.decision_scores_ > detector.threshold_) == pytest.approx(0.05)


@pytest.mark.parametrize("name", CLASSICAL)
def test_constant_features_give_finite_scores(data, name):
    train, test, _ = data
    train, test = train.copy(), test.copy()
    train[:, 2] = 4.0
    test[:, 2] = 4.0
    test[:3, 5] = 4.0
    detector = build_detector(name, **SMALL.get(name, {})).fit(train)
    assert np.all(np.isfinite(detector.decision_function(test)))
    assert np.all(np.isfinite(detector.decision_scores_))


# -- bad input -----------------------------------------------------------------------------
def test_dimension_mismatch_is_refused(data):
    train, test, _ = data
    detector = build_detector("mahalanobis").fit(train)
    with pytest.raises(ValueError, match="fitted on 8-dimensional embeddings, got 7 dimensions"):
        detector.decision_function(test[:, :7])


def test_mixed_feature_signatures_are_refused(data):
    train, test, _ = data
    detector = build_detector("isolation_forest").fit(train, feature_signature="lmfe-64")
    assert detector.feature_signature_ == "lmfe-64"
    detector.decision_function(test, feature_signature="lmfe-64")
    with pytest.raises(FeatureSignatureError, match="mixed feature configurations"):
        detector.decision_function(test, feature_signature="mfcc-13")
    with pytest.raises(FeatureSignatureError, match="mixed feature configurations"):
        detector.predict(test, feature_signature="mfcc-13")


def test_nan_and_unfitted_are_refused(data):
    train, test, _ = data
    with pytest.raises(NotFittedError, match="knn is not fitted; call fit"):
        KNNDetector().decision_function(test)
    bad = train.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        KNNDetector().fit(bad)


def test_ocsvm_subsamples_deterministically():
    train, test, _ = make_data(n_train=300)
    first = build_detector("ocsvm", max_train_samples=50, random_state=4).fit(train)
    second = build_detector("ocsvm", max_train_samples=50, random_state=4).fit(train)
    assert first.n_train_samples_ == 50 and len(first.decision_scores_) == 50
    assert first.n_samples_seen_ == 300 and first.train_embeddings_.shape == (50, 8)
    np.testing.assert_array_equal(first.decision_function(test), second.decision_function(test))
    assert first.describe() == "ocsvm (rbf, nu=0.1, gamma=scale, fitted on 50 of 300 rows)"


def test_training_rows_are_kept_as_a_copy(data):
    train = data[0].copy()
    detector = build_detector("knn").fit(train)
    train[:] = 0.0
    np.testing.assert_array_equal(detector.train_embeddings_, data[0])


# -- registry ------------------------------------------------------------------------------
def test_registry_names_specs_and_errors():
    assert type(build_detector("IForest")).__name__ == "IsolationForestDetector"
    assert type(build_detector("one_class_svm")).__name__ == "OneClassSVMDetector"
    lof = detector_from_spec({"name": "lof", "params": {"n_neighbors": 7}})
    assert lof.n_neighbors == 7
    knn = detector_from_spec(
        {"class_path": "aad.detectors.KNNDetector", "init_args": {"method": "max"}}
    )
    assert knn.method == "max"
    with pytest.raises(ValueError, match=r"unknown detector 'svdd'; known: \["):
        build_detector("svdd")
    with pytest.raises(ValueError, match="knn: method must be one of"):
        build_detector("knn", method="sum")
    with pytest.raises(ValueError, match="detector spec needs 'name'"):
        detector_from_spec({"params": {}})


def test_class_path_spec_is_checked_before_it_is_called(monkeypatch):
    calls: list[object] = []

    class Tripwire:
        def __init__(self, *args: object, **kwargs: object) -> None:
            calls.append((args, kwargs))

    module = types.ModuleType("aad_test_tripwire")
    module.Tripwire = Tripwire
    monkeypatch.setitem(sys.modules, "aad_test_tripwire", module)
    with pytest.raises(ValueError, match="aad_test_tripwire.Tripwire is not an aad BaseDetector"):
        detector_from_spec({"class_path": "aad_test_tripwire.Tripwire", "init_args": {"x": 1}})
    with pytest.raises(ValueError, match="os.system is not an aad BaseDetector"):
        detector_from_spec({"class_path": "os.system", "init_args": {}})
    with pytest.raises(ValueError, match="aad.detectors.BaseDetector is not an aad BaseDetector"):
        detector_from_spec({"class_path": "aad.detectors.BaseDetector"})  # abstract
    assert calls == []
