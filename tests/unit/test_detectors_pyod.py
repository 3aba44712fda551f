"""Any PyOD detector behind aad's contract: parity with PyOD, class checks, missing PyOD."""

from __future__ import annotations

import re
import sys
import types

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from aad.detectors import PyODDetector, build_detector
from aad.thresholds import fit_threshold


def make_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 3.0, 8)
    train = rng.normal(size=(150, 8)) * scale + 10.0
    test_normal = rng.normal(size=(40, 8)) * scale + 10.0
    test = np.vstack([test_normal, test_normal + 2.5 * scale])
    return train, test, np.r_[np.zeros(40), np.ones(40)]


def test_missing_pyod_gives_an_install_hint(monkeypatch):
    for module in ("pyod", "pyod.models", "pyod.models.base"):
        monkeypatch.setitem(sys.modules, module, None)  # import of pyod now fails
    message = "PyODDetector needs PyOD, which is not installed: pip install pyod"
    with pytest.raises(ImportError, match=re.escape(message) + ".*aad\\[bench\\]"):
        PyODDetector()


def test_ecod_matches_pyod_on_standardised_rows():
    ecod = pytest.importorskip("pyod.models.ecod")
    train, test, labels = make_data()
    ours = build_detector("pyod").fit(train)
    scaler = StandardScaler().fit(train)
    reference = ecod.ECOD().fit(scaler.transform(train))
    np.testing.assert_allclose(ours.decision_scores_, reference.decision_scores_)
    np.testing.assert_allclose(
        ours.decision_function(test), reference.decision_function(scaler.transform(test))
    )
    assert roc_auc_score(labels, ours.decision_function(test)) > 0.9
    assert ours.threshold_ == fit_threshold(ours.decision_scores_)  # aad's rule, not PyOD's
    assert ours.describe() == "pyod (ECOD)"


def test_estimator_params_and_random_state_reach_pyod():
    iforest = pytest.importorskip("pyod.models.iforest")
    train, test, _ = make_data()
    ours = PyODDetector("pyod.models.iforest.IForest", {"n_estimators": 30}, random_state=7)
    ours.fit(train)
    assert ours.model_.n_estimators == 30 and ours.model_.random_state == 7
    scaler = StandardScaler().fit(train)
    reference = iforest.IForest(n_estimators=30, random_state=7).fit(scaler.transform(train))
    np.testing.assert_allclose(
        ours.decision_function(test), reference.decision_function(scaler.transform(test))
    )
    assert ours.describe() == "pyod (IForest, n_estimators=30)"


def test_non_pyod_classes_are_refused_before_they_are_called(monkeypatch):
    pytest.importorskip("pyod")
    calls: list[object] = []

    class Tripwire:
        def __init__(self, *args: object, **kwargs: object) -> None:
            calls.append(kwargs)

    module = types.ModuleType("aad_test_tripwire")
    module.Tripwire = Tripwire
    monkeypatch.setitem(sys.modules, "aad_test_tripwire", module)
    for path in ("aad_test_tripwire.Tripwire", "sklearn.ensemble.IsolationForest", "os.system"):
        message = f"pyod: estimator {path!r} is not a PyOD detector"
        with pytest.raises(ValueError, match=re.escape(message)):
            PyODDetector(path)
    assert calls == []
    with pytest.raises(ValueError, match="pyod: cannot import estimator 'pyod.models.nope.X'"):
        PyODDetector("pyod.models.nope.X")
    with pytest.raises(ValueError, match=r"pyod: pyod.models.ecod.ECOD does not take \['k'\]"):
        PyODDetector(estimator_params={"k": 3})


def test_small_training_set_and_round_trip(tmp_path):
    pytest.importorskip("pyod")
    train, test, _ = make_data()
    detector = PyODDetector(threshold_method="percentile").fit(train[:3], feature_signature="s")
    assert np.all(np.isfinite(detector.decision_function(test)))
    loaded = PyODDetector.load(detector.save(tmp_path / "ecod.npz"))
    np.testing.assert_array_equal(loaded.decision_function(test), detector.decision_function(test))
    assert loaded.feature_signature_ == "s" and loaded.threshold_ == detector.threshold_
