"""Any PyOD detector behind aad's contract (scaling, feature signature, threshold, save/load).

PyOD is optional (``pip install pyod``, or ``pip install 'aad[bench]'``) and imported only
when a :class:`PyODDetector` is built. PyOD's ``decision_function`` already says "higher =
more anomalous"; its own ``contamination``/``threshold_`` play no part.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np

from aad.detectors.base import BaseDetector
from aad.thresholds import DEFAULT_METHOD, DEFAULT_QUANTILE

PYOD_MISSING = (
    "PyODDetector needs PyOD, which is not installed: pip install pyod "
    "(or pip install 'aad[bench]')"
)


def resolve_pyod_class(class_path: str) -> type:
    """The PyOD detector class at ``class_path`` (e.g. ``"pyod.models.ecod.ECOD"``).

    The class is checked to derive from ``pyod.models.base.BaseDetector`` right after the
    import and before anything else calls it.
    """
    try:
        pyod_base = importlib.import_module("pyod.models.base").BaseDetector
    except ImportError as exc:
        raise ImportError(PYOD_MISSING) from exc
    module_name, _, class_name = class_path.rpartition(".")
    if not module_name or not class_name:
        raise ValueError(
            f"pyod: estimator must be a class path like 'pyod.models.ecod.ECOD', got {class_path!r}"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name, None)
    except ImportError as exc:
        raise ValueError(f"pyod: cannot import estimator {class_path!r}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, pyod_base)):
        raise ValueError(
            f"pyod: estimator {class_path!r} is not a PyOD detector "
            "(a subclass of pyod.models.base.BaseDetector)"
        )
    return cls


class PyODDetector(BaseDetector):
    """A PyOD detector fitted on scaled rows; aad's threshold on its training scores.

    >>> PyODDetector("pyod.models.iforest.IForest", {"n_estimators": 50})  # doctest: +SKIP

    ``estimator_params`` are the PyOD class's constructor arguments (checked against its
    signature at construction); ``random_state`` is passed on when the class takes one and
    ``estimator_params`` does not set it. Training scores are PyOD's ``decision_scores_``
    (leave-one-out where the method defines it so, e.g. its KNN).
    """

    name = "pyod"

    def __init__(
        self,
        estimator: str = "pyod.models.ecod.ECOD",
        estimator_params: dict[str, Any] | None = None,
        *,
        scale: bool | str = True,
        threshold_method: str = DEFAULT_METHOD,
        threshold_quantile: float = DEFAULT_QUANTILE,
        max_train_samples: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.estimator = estimator
        self.estimator_params = estimator_params
        super().__init__(
            scale=scale,
            threshold_method=threshold_method,
            threshold_quantile=threshold_quantile,
            max_train_samples=max_train_samples,
            random_state=random_state,
        )

    def _check_params(self) -> None:
        super()._check_params()
        if not isinstance(self.estimator, str):
            raise ValueError(f"pyod: estimator must be a class path string, got {self.estimator!r}")
        if self.estimator_params is not None and not isinstance(self.estimator_params, Mapping):
            raise ValueError(
                f"pyod: estimator_params must be a mapping or None, got {self.estimator_params!r}"
            )
        self._estimator_arguments(resolve_pyod_class(self.estimator))

    def _estimator_arguments(self, cls: type) -> dict[str, Any]:
        """Constructor arguments for ``cls``: ``estimator_params`` (+ ``random_state``)."""
        arguments = dict(self.estimator_params or {})
        signature = inspect.signature(cls.__init__).parameters
        takes_any = any(p.kind is p.VAR_KEYWORD for p in signature.values())
        unknown = sorted(k for k in arguments if k not in signature or k == "self")
        if unknown and not takes_any:
            accepted = sorted(k for k in signature if k != "self")
            raise ValueError(f"pyod: {self.estimator} does not take {unknown}; it takes {accepted}")
        if "random_state" in signature and "random_state" not in arguments:
            arguments["random_state"] = self.random_state
        return arguments

    def _describe_settings(self) -> list[str]:
        settings = [self.estimator.rpartition(".")[2]]
        settings += [f"{k}={v}" for k, v in sorted((self.estimator_params or {}).items())]
        return settings

    def _fit(self, X: np.ndarray) -> np.ndarray:
        cls = resolve_pyod_class(self.estimator)
        self.model_ = cls(**self._estimator_arguments(cls)).fit(X)
        return np.asarray(self.model_.decision_scores_, dtype=np.float64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        return self.model_.decision_function(X)
