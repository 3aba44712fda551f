"""Pickle-free detector files: training embeddings + a JSON header in one ``.npz``.

``joblib``/``pickle`` files run arbitrary code when loaded, so aad never loads them. A
detector file holds what is needed to rebuild the detector, not the fitted object:

* ``header``: JSON text (``format``, ``format_version``, ``class_path``, ``params`` =
  ``get_params()``, ``feature_signature``, ``n_samples_seen``, ``threshold``);
* ``train_embeddings``: the rows the detector was fitted on (after subsampling), float64;
* ``decision_scores``: their training scores.

:func:`load_detector` reads it with ``np.load(allow_pickle=False)``, checks that
``class_path`` names a subclass of aad's ``BaseDetector`` (import, then ``issubclass``,
before anything is called), re-fits on the saved rows and checks that the re-fitted
training scores and threshold equal the saved ones (relative tolerance
:data:`LOAD_RTOL`): a different library version or a tampered file fails loudly.
"""

from __future__ import annotations

import importlib
import inspect
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from aad.detectors.base import BaseDetector

FORMAT = "aad.detectors"
FORMAT_VERSION = 2
LOAD_RTOL = 1e-9  # re-fitted vs saved training scores, relative to the largest score
ARRAYS = ("header", "train_embeddings", "decision_scores")


class DetectorFileError(ValueError):
    """A detector file that is not an aad detector file, or does not reproduce."""


def resolve_detector_class(class_path: str) -> type[BaseDetector]:
    """The concrete aad ``BaseDetector`` subclass at ``module.Class``; ``ValueError`` if not.

    Only the module is imported; the class is checked before it is called.
    """
    module_name, _, class_name = str(class_path).rpartition(".")
    if not module_name or not class_name:
        raise ValueError(f"{class_path!r} is not a class path like 'aad.detectors.KNNDetector'")
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError as exc:
        raise ValueError(f"cannot import {class_path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, BaseDetector)) or inspect.isabstract(cls):
        raise ValueError(f"{class_path} is not an aad BaseDetector")
    return cls


def save_detector(detector: BaseDetector, path: str | Path) -> Path:
    """Write a fitted detector to ``path`` (an ``.npz`` archive, whatever the suffix)."""
    detector._check_fitted()
    cls = type(detector)
    params = detector.get_params(deep=False)
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "class_path": f"{cls.__module__}.{cls.__qualname__}",
        "params": params,
        "feature_signature": detector.feature_signature_,
        "n_samples_seen": int(detector.n_samples_seen_),
        "threshold": float(detector.threshold_),
    }
    try:
        text = json.dumps(header, default=_json_scalar, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{detector.name}: cannot save parameters {params}: {exc}") from None
    if json.loads(text)["params"] != params:
        raise TypeError(
            f"{detector.name}: parameters {params} do not survive JSON (tuples, sets, objects); "
            "use lists, numbers and strings to save this detector"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        np.savez(
            handle,
            header=np.array(text),
            train_embeddings=np.asarray(detector.train_embeddings_, dtype=np.float64),
            decision_scores=np.asarray(detector.decision_scores_, dtype=np.float64),
        )
    os.replace(temporary, path)
    return path


def load_detector(path: str | Path, expected: type[BaseDetector] = BaseDetector) -> BaseDetector:
    """Rebuild the detector saved at ``path``; it must be an ``expected`` (sub)class."""
    header, train, saved_scores = _read(Path(path))
    try:
        cls = resolve_detector_class(header["class_path"])
    except ValueError as exc:
        raise DetectorFileError(f"{path}: {exc}") from None
    if not issubclass(cls, expected):
        raise TypeError(f"{path} holds a {cls.__name__}, not a {expected.__name__}")
    params = header.get("params")
    if not isinstance(params, dict):
        raise DetectorFileError(f"{path}: header 'params' is not a mapping")
    detector = cls(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the original fit already warned
        detector.fit(train, feature_signature=header.get("feature_signature"))
    tolerance = LOAD_RTOL * max(1.0, float(np.max(np.abs(saved_scores))))
    difference = (
        float(np.max(np.abs(detector.decision_scores_ - saved_scores)))
        if detector.decision_scores_.shape == saved_scores.shape
        else float("inf")
    )
    threshold_difference = abs(detector.threshold_ - float(header.get("threshold", np.nan)))
    if not (difference <= tolerance and threshold_difference <= tolerance):
        raise DetectorFileError(
            f"{path}: re-fitting {header['class_path']} on the saved training embeddings does "
            f"not reproduce the saved training scores (max difference {difference:.3g}, "
            f"threshold difference {threshold_difference:.3g}, tolerance {tolerance:.3g}): the "
            "file was changed, or written by other versions of aad/scikit-learn/PyOD, or the "
            "detector is not deterministic (random_state=None)"
        )
    detector.n_samples_seen_ = int(header.get("n_samples_seen", len(train)))
    return detector


def _read(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Header, training rows and training scores of a detector file, without unpickling."""
    refused = (
        f"{path} is not an aad detector file (an .npz written by BaseDetector.save); "
        "pickle/joblib files are refused because loading them can run arbitrary code"
    )
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError:  # not .npy/.npz: numpy would need pickle, which is off
        raise DetectorFileError(f"{refused} (not an .npz archive)") from None
    except (EOFError, zipfile.BadZipFile) as exc:
        raise DetectorFileError(f"{refused} ({exc})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DetectorFileError(refused)
    with archive:
        missing = [name for name in ARRAYS if name not in archive.files]
        if missing:
            raise DetectorFileError(f"{refused} (missing {missing})")
        try:
            arrays = {name: archive[name] for name in ARRAYS}
        except (ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise DetectorFileError(f"{refused} ({exc})") from None
    try:
        header = json.loads(str(arrays["header"][()]))
    except (json.JSONDecodeError, IndexError, TypeError) as exc:
        raise DetectorFileError(f"{refused} (header: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise DetectorFileError(refused)
    if header.get("format_version") != FORMAT_VERSION:
        raise DetectorFileError(
            f"{path} has detector format version {header.get('format_version')}, "
            f"this aad reads version {FORMAT_VERSION}"
        )
    train, scores = arrays["train_embeddings"], arrays["decision_scores"]
    if train.dtype != np.float64 or train.ndim != 2 or scores.shape != (train.shape[0],):
        raise DetectorFileError(
            f"{path}: train_embeddings {train.dtype}{train.shape} and decision_scores "
            f"{scores.dtype}{scores.shape} do not fit together"
        )
    return header, train, scores.astype(np.float64)


def _json_scalar(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{value!r} ({type(value).__name__}) is not JSON-serialisable")
