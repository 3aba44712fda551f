"""scikit-learn compatibility, constructor validation and small training sets."""

from __future__ import annotations

import inspect
import re
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import LocalOutlierFactor
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from aad.detectors import DETECTORS, SmallTrainingSetWarning, build_detector

CLASSICAL = sorted(set(DETECTORS) - {"pyod"})


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(60, 6)) * [1, 2, 3, 1, 2, 3] + 5.0


# -- scikit-learn compatibility ------------------------------------------------------------
@pytest.mark.parametrize("name", CLASSICAL)
def test_get_params_set_params_and_clone_follow_sklearn(rows, name):
    cls = DETECTORS[name]
    signature = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    detector = build_detector(name, threshold_quantile=0.8)
    assert sorted(detector.get_params()) == sorted(signature)
    assert detector.get_params()["threshold_quantile"] == 0.8
    with pytest.raises(NotFittedError):
        check_is_fitted(detector)
    detector.fit(rows)
    check_is_fitted(detector)
    copy = clone(detector)  # clone re-checks that every parameter is stored unchanged
    assert copy.get_params() == detector.get_params()
    assert not hasattr(copy, "threshold_")
    copy.set_params(threshold_method="percentile")
    assert copy.fit(rows).threshold_ == np.quantile(copy.decision_scores_, 0.8)


def test_parameters_are_stored_unchanged_and_y_is_ignored(rows):
    detector = build_detector("knn", scale=True, max_train_samples=None)
    assert detector.scale is True and detector.max_train_samples is None
    assert repr(detector) == "KNNDetector(max_train_samples=None)"
    with_y = build_detector("knn").fit(rows, np.ones(len(rows)))
    np.testing.assert_array_equal(
        with_y.decision_scores_, build_detector("knn").fit(rows).decision_scores_
    )
    fitted = build_detector("knn").fit(rows, feature_signature="sig")
    assert fitted.feature_signature_ == "sig" and fitted.n_features_in_ == 6
    assert isinstance(fitted.scaler_, StandardScaler) and fitted.n_train_samples_ == 60


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("knn", {"n_neighbors": 0}, "knn: n_neighbors must be an integer >= 1, got 0"),
        ("lof", {"n_neighbors": 2.5}, "lof: n_neighbors must be an integer >= 1, got 2.5"),
        ("knn", {"metric": "cosinus"}, "knn: metric must be one of ("),
        ("knn", {"algorithm": "annoy"}, "knn: algorithm must be one of ('auto', 'ball_tree'"),
        (
            "mahalanobis",
            {"estimator": "mcd"},
            "mahalanobis: estimator must be one of ('ledoit_wolf', 'empirical', 'shrunk'), "
            "got 'mcd'",
        ),
        ("mahalanobis", {"shrinkage": 1.5}, "mahalanobis: shrinkage must be in [0.0, 1.0]"),
        ("gmm", {"n_components": 0}, "gmm: n_components must be an integer >= 1, got 0"),
        ("gmm", {"covariance_type": "banded"}, "gmm: covariance_type must be one of ("),
        ("ocsvm", {"nu": 0}, "ocsvm: nu must be in (0.0, 1.0], got 0"),
        ("ocsvm", {"gamma": -1.0}, "ocsvm: gamma must be 'scale', 'auto' or a float > 0, got -1.0"),
        ("ocsvm", {"kernel": "precomputed"}, "ocsvm: kernel must be one of ('linear'"),
        ("isolation_forest", {"max_samples": 1.5}, "isolation_forest: max_samples must be a"),
        ("isolation_forest", {"n_estimators": 0}, "isolation_forest: n_estimators must be an"),
        ("isolation_forest", {"scale": "robust"}, "isolation_forest: scale must be a bool or"),
        (
            "knn",
            {"threshold_method": "otsu"},
            "knn: threshold_method must be one of ('gamma', 'percentile'), got 'otsu'",
        ),
        ("gmm", {"threshold_quantile": 1.0}, "gmm: threshold_quantile must be in (0, 1), got 1.0"),
        ("lof", {"max_train_samples": 1}, "lof: max_train_samples must be an integer >= 2 or"),
        ("knn", {"random_state": "seed"}, "knn: random_state must be an integer or None"),
    ],
)
def test_bad_settings_fail_at_construction(name, params, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        build_detector(name, **params)


def test_contamination_is_gone_and_set_params_is_checked_at_fit(rows):
    with pytest.raises(TypeError, match="unexpected keyword argument 'contamination'"):
        build_detector("isolation_forest", contamination=0.1)
    detector = build_detector("knn").set_params(n_neighbors=-2)
    with pytest.raises(ValueError, match="knn: n_neighbors must be an integer >= 1, got -2"):
        detector.fit(rows)


# -- small training sets -------------------------------------------------------------------
def _fit_recording(name: str, params: dict, train: np.ndarray):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        detector = build_detector(name, **params).fit(train)
    return detector, [str(w.message) for w in caught]


def test_knn_clamps_k_with_one_warning(rows):
    train, test = rows[:4], rows[10:20]
    detector, messages = _fit_recording("knn", {"n_neighbors": 5}, train)
    assert messages == [
        "knn: n_neighbors=5 requested but only 4 training clips; using n_neighbors=3"
    ]
    assert detector.n_neighbors_ == 3 and detector.n_neighbors == 5
    assert detector.describe() == "knn (k=3 of 5 requested)"
    scaler = StandardScaler().fit(train)
    dist = np.linalg.norm(scaler.transform(test)[:, None] - scaler.transform(train)[None], axis=2)
    expected = np.sort(dist, axis=1)[:, :3].mean(axis=1)
    np.testing.assert_allclose(detector.decision_function(test), expected, rtol=1e-10)
    with pytest.warns(SmallTrainingSetWarning):
        build_detector("knn", n_neighbors=5).fit(train)


def test_lof_clamps_k_like_sklearn_but_warns_once(rows):
    train, test = rows[:6], rows[10:20]
    detector, messages = _fit_recording("lof", {}, train)
    assert messages == [
        "lof: n_neighbors=20 requested but only 6 training clips; using n_neighbors=5"
    ]
    assert detector.n_neighbors_ == 5 and detector.describe() == "lof (k=5 of 20 requested)"
    scaler = StandardScaler().fit(train)
    reference = LocalOutlierFactor(n_neighbors=5, novelty=True).fit(scaler.transform(train))
    np.testing.assert_allclose(
        detector.decision_function(test), -reference.score_samples(scaler.transform(test))
    )


def test_gmm_clamps_components_and_enough_rows_do_not_warn(rows):
    detector, messages = _fit_recording("gmm", {"n_components": 4}, rows[:3])
    assert messages == [
        "gmm: n_components=4 requested but only 3 training clips; using n_components=3"
    ]
    assert detector.n_components_ == 3
    assert detector.describe() == "gmm (3 of 4 components requested, full)"
    for name in ("knn", "lof", "gmm"):
        assert _fit_recording(name, {"n_components": 4} if name == "gmm" else {}, rows)[1] == []


@pytest.mark.parametrize("name", ["knn", "lof"])
def test_one_row_is_a_clear_error_for_neighbour_detectors(rows, name):
    message = (
        f"{name} needs at least 2 training clips "
        "(each clip needs a neighbour other than itself), got 1"
    )
    with pytest.raises(ValueError, match=re.escape(message)):
        build_detector(name).fit(rows[:1])


@pytest.mark.parametrize("n_train", [2, 3, 4])
@pytest.mark.parametrize("name", CLASSICAL)
def test_every_detector_fits_two_to_four_rows(rows, name, n_train):
    """Default settings on 2-4 clips: finite scores and threshold; a clip far from them
    scores highest (isolation forest aside)."""
    train = rows[:n_train]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SmallTrainingSetWarning)
        detector = build_detector(name).fit(train)
    far = train.mean(axis=0, keepdims=True) + 50.0 * train.std(axis=0, keepdims=True)
    scores = detector.decision_function(np.vstack([train, far]))
    assert np.all(np.isfinite(scores)) and np.isfinite(detector.threshold_)
    if name != "isolation_forest":  # it splits only inside the training range: a far clip
        assert scores[-1] >= scores[:-1].max(), (name, scores)  # isolates like an edge one
    assert detector.predict(far)[0] == int(scores[-1] > detector.threshold_)
