"""Pickle-free detector files: round trips, and refusal of anything that could run code."""

from __future__ import annotations

import importlib.util
import json
import os
import shlex
import sys
import types
from pathlib import Path

import joblib
import numpy as np
import pytest

from aad.detectors import (
    DETECTORS,
    BaseDetector,
    DetectorFileError,
    KNNDetector,
    build_detector,
    load_detector,
)

SMALL = {"lof": {"n_neighbors": 5}, "knn": {"n_neighbors": 3}}
PYOD = pytest.mark.skipif(importlib.util.find_spec("pyod") is None, reason="pyod not installed")
NAMES = [pytest.param(n, marks=PYOD) if n == "pyod" else n for n in sorted(DETECTORS)]


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scale = np.linspace(0.5, 3.0, 8)
    return rng.normal(size=(90, 8)) * scale + 10.0, rng.normal(size=(30, 8)) * 2 * scale + 10.0


@pytest.fixture(scope="module")
def data():
    return make_data()


@pytest.fixture()
def saved_knn(tmp_path, data) -> Path:
    return build_detector("knn", n_neighbors=3).fit(data[0]).save(tmp_path / "knn.npz")


def rewrite(path: Path, **changes: object) -> None:
    """Re-save the arrays of ``path`` with some replaced (header: a dict merged in)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    header = json.loads(str(arrays["header"][()]))
    header.update(changes.pop("header", {}))
    arrays["header"] = np.array(json.dumps(header))
    arrays.update(changes)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_gives_identical_scores(tmp_path, data, name):
    train, test = data
    detector = build_detector(name, **SMALL.get(name, {}), random_state=5)
    detector.fit(train, feature_signature="abc")
    path = detector.save(tmp_path / f"{name}.detector")  # any suffix: the file is an .npz
    assert path.exists() and not path.with_name(path.name + ".npz").exists()
    loaded = BaseDetector.load(path)
    assert type(loaded) is type(detector) and loaded.get_params() == detector.get_params()
    assert loaded.feature_signature_ == "abc" and loaded.describe() == detector.describe()
    np.testing.assert_array_equal(loaded.decision_function(test), detector.decision_function(test))
    np.testing.assert_array_equal(loaded.decision_scores_, detector.decision_scores_)
    assert loaded.threshold_ == detector.threshold_


def test_round_trip_keeps_the_fitted_subsample(tmp_path, data):
    train, test = data
    detector = build_detector("ocsvm", max_train_samples=40, random_state=2).fit(train)
    loaded = load_detector(detector.save(tmp_path / "ocsvm.npz"))
    with np.load(tmp_path / "ocsvm.npz", allow_pickle=False) as archive:
        np.testing.assert_array_equal(archive["train_embeddings"], detector.train_embeddings_)
    assert (loaded.n_train_samples_, loaded.n_samples_seen_) == (40, 90)
    np.testing.assert_array_equal(loaded.decision_function(test), detector.decision_function(test))


def test_pickle_payload_is_refused_without_running_it(tmp_path, data):
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {shlex.quote(str(marker))}",)

    path = tmp_path / "evil.joblib"
    joblib.dump({"format_version": 2, "detector": Exploit()}, path)
    with pytest.raises(DetectorFileError, match="pickle/joblib files are refused"):
        BaseDetector.load(path)
    # a pickled object array inside an .npz is refused too
    npz = tmp_path / "evil.npz"
    np.savez(
        npz,
        header=np.array([Exploit()], dtype=object),
        train_embeddings=data[0][:3],
        decision_scores=np.zeros(3),
    )
    with pytest.raises(DetectorFileError, match="pickle/joblib files are refused"):
        BaseDetector.load(npz)
    assert not marker.exists()
    joblib.load(path)  # the payload is live: unpickling it does run the command
    assert marker.exists()


def test_class_path_is_checked_before_anything_is_called(tmp_path, saved_knn, monkeypatch):
    calls: list[object] = []

    class Tripwire:
        def __init__(self, *args: object, **kwargs: object) -> None:
            calls.append(kwargs)

    module = types.ModuleType("aad_test_tripwire")
    module.Tripwire = Tripwire
    monkeypatch.setitem(sys.modules, "aad_test_tripwire", module)
    rewrite(saved_knn, header={"class_path": "aad_test_tripwire.Tripwire"})
    with pytest.raises(DetectorFileError, match="Tripwire is not an aad BaseDetector"):
        BaseDetector.load(saved_knn)
    rewrite(saved_knn, header={"class_path": "subprocess.Popen", "params": {"args": ["true"]}})
    with pytest.raises(DetectorFileError, match="subprocess.Popen is not an aad BaseDetector"):
        BaseDetector.load(saved_knn)
    assert calls == []


def test_tampered_or_foreign_files_are_refused(tmp_path, saved_knn, data):
    with np.load(saved_knn) as archive:
        scores = archive["decision_scores"]
    rewrite(saved_knn, decision_scores=scores * (1 + 1e-6))
    with pytest.raises(DetectorFileError, match="does not reproduce the saved training scores"):
        BaseDetector.load(saved_knn)
    rewrite(saved_knn, decision_scores=scores, header={"format_version": 99})
    with pytest.raises(DetectorFileError, match="format version 99, this aad reads version 2"):
        BaseDetector.load(saved_knn)
    other = build_detector("lof", n_neighbors=4).fit(data[0]).save(tmp_path / "lof.npz")
    with pytest.raises(TypeError, match="holds a LOFDetector, not a KNNDetector"):
        KNNDetector.load(other)
    (tmp_path / "empty.npz").write_bytes(b"")
    with pytest.raises(DetectorFileError, match="is not an aad detector file"):
        BaseDetector.load(tmp_path / "empty.npz")


def test_save_needs_a_fitted_detector_with_json_parameters(tmp_path, data):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        build_detector("knn").save(tmp_path / "x.npz")
    detector = build_detector("knn", metric=lambda a, b: float(np.abs(a - b).sum()))
    with pytest.raises(TypeError, match="knn: cannot save parameters"):
        detector.fit(data[0][:10]).save(tmp_path / "x.npz")
