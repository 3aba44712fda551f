"""Methods behind one protocol: fit on a group's normal clips, score any of its clips.

- :class:`ModelMethod`: a Lightning model (:class:`~aad.models.base.AnomalyModule`), fitted by
  :func:`aad.engine.fit.fit_model` (validation split, early stopping, checkpoints) or loaded
  from a checkpoint, scored by :func:`aad.scoring.score_loader`.
- :class:`DetectorMethod`: a classical detector (:mod:`aad.detectors`) on clip embeddings
  (:mod:`aad.embeddings`), from the feature front-end or a model method's latent code.

:class:`MethodSpec` is the typed config entry of a compare method; jsonargparse checks that a
``detector`` class path is a :class:`~aad.detectors.BaseDetector` and a ``model`` class path an
:class:`~aad.models.base.AnomalyModule` before anything is instantiated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import lightning as L
import numpy as np

from aad.data.datamodule import MachineSoundDataModule
from aad.data.manifest import ClipRecord
from aad.detectors.base import BaseDetector
from aad.embeddings import EmbeddingConfig, compute_embeddings, embedding_signature, resolve_device
from aad.engine.fit import fit_model
from aad.models.base import AnomalyModule
from aad.scoring import score_loader


class Method(Protocol):
    """What the runner needs of a method."""

    name: str

    def fit(self, data: MachineSoundDataModule) -> None: ...

    def score(self, data: MachineSoundDataModule, records: Sequence[ClipRecord]) -> np.ndarray: ...

    @property
    def threshold(self) -> float: ...

    def describe(self) -> str: ...


@dataclass
class MethodSpec:
    """One compare method: a ``detector`` on embeddings or a ``model`` trained here.

    Args:
        name: the method's label in every table.
        detector: class_path + init_args of an aad detector (e.g. ``aad.detectors.KNNDetector``).
        model: class_path + init_args of an aad model (e.g. ``aad.models.LSTMAE``).
        embedding: detector only: :class:`~aad.embeddings.EmbeddingConfig` fields overriding
            the run's ``embedding`` for this method.
        latent_model: detector only: embed with this model method's latent code instead.
        trainer: model only: Trainer arguments overriding the run's ``trainer``.
        batch_size: model only: overrides ``data.batch_size``.
    """

    name: str
    detector: BaseDetector | None = None
    model: AnomalyModule | None = None
    embedding: dict[str, Any] | None = None
    latent_model: str | None = None
    trainer: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if (self.detector is None) == (self.model is None):
            raise ValueError(f"method {self.name!r}: give exactly one of detector or model")
        if self.model is not None and (self.embedding or self.latent_model):
            raise ValueError(f"method {self.name!r}: embedding/latent_model are for detectors")
        if self.detector is not None and (self.trainer or self.batch_size):
            raise ValueError(f"method {self.name!r}: trainer/batch_size are for models")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"method {self.name!r}: batch_size must be >= 1")


def _fitting_records(data: MachineSoundDataModule) -> list[ClipRecord]:
    """Every normal training clip of the bound group (fit + held-out validation clips)."""
    assert data.group is not None
    records = list({r.path: r for r in [*data.group.train, *data.group.val]}.values())
    if not records:
        raise ValueError(f"no usable normal training clips for {data.group.label}")
    return records


@dataclass
class ModelMethod:
    """A Lightning model: fitted through :func:`fit_model`, or already trained (no trainer)."""

    name: str
    module: AnomalyModule
    trainer: L.Trainer | None = None
    batch_size: int | None = None
    ckpt_path: str | None = None
    device: str = "auto"
    run_dir: str | None = None

    def bind(self, data: MachineSoundDataModule) -> MachineSoundDataModule:
        """The group's data at this model's sample rate (and batch size)."""
        assert data.group is not None, "bind the data to a group first (for_group)"
        trained_on = getattr(self.module.hparams, "class_names", None)  # a trained classifier
        bound = data.for_group(data.group, self.module.sample_rate, class_names=trained_on)
        if self.batch_size:
            bound.batch_size = self.batch_size
        return bound

    def fit(self, data: MachineSoundDataModule) -> None:
        """Train (a method loaded from a checkpoint, without trainer, is already trained)."""
        if self.trainer is None:
            return
        fit_model(self.module, self.bind(data), self.trainer, ckpt_path=self.ckpt_path)
        self.run_dir = self.trainer.log_dir  # a collective under DDP: every rank asks here

    def score(self, data: MachineSoundDataModule, records: Sequence[ClipRecord]) -> np.ndarray:
        bound = self.bind(data)
        self.module.to(resolve_device(self.device))
        scored = score_loader(self.module, bound.loader("test", records=records))
        scores = np.full(len(records), np.nan)
        scores[scored.index] = scored.score
        return scores

    @property
    def threshold(self) -> float:
        return float(self.module.threshold)

    def describe(self) -> str:
        return f"{type(self.module).__name__} (score {self.module.score_name})"


@dataclass
class DetectorMethod:
    """A classical detector on clip embeddings (features, or ``latent``'s latent code)."""

    name: str
    detector: BaseDetector
    embedding: EmbeddingConfig
    latent: ModelMethod | None = None

    def _embed(self, data: MachineSoundDataModule, records: Sequence[ClipRecord]) -> np.ndarray:
        assert data.group is not None
        settings = self.embedding
        if self.latent is not None:
            rate = self.latent.module.sample_rate
        else:
            rate = int(settings.features.get("sample_rate", 16000))
        bound = data.for_group(data.group, sample_rate=rate)
        return compute_embeddings(
            records,
            settings.features,
            mode=settings.mode,
            stats=tuple(settings.stats),
            batch_size=settings.batch_size,
            device=settings.device,
            cache_dir=settings.cache_dir,
            source="latent" if self.latent is not None else "features",
            module=self.latent.module if self.latent is not None else None,
            channel=bound.channel,
            num_samples=bound.num_samples,
            num_workers=settings.num_workers,
        )

    def _signature(self) -> str:
        if self.latent is not None:
            return f"latent:{self.latent.name}:{self.latent.module.feature_signature}"
        settings = self.embedding
        return embedding_signature(settings.features, settings.mode, tuple(settings.stats))

    def fit(self, data: MachineSoundDataModule) -> None:
        rows = self._embed(data, _fitting_records(data))
        self.detector.fit(rows, feature_signature=self._signature())

    def score(self, data: MachineSoundDataModule, records: Sequence[ClipRecord]) -> np.ndarray:
        rows = self._embed(data, records)
        return self.detector.decision_function(rows, feature_signature=self._signature())

    @property
    def threshold(self) -> float:
        return float(self.detector.threshold_)

    def describe(self) -> str:
        describe = getattr(self.detector, "describe", None)
        text = describe() if callable(describe) else type(self.detector).__name__
        return f"{text} on {'latent of ' + self.latent.name if self.latent else 'embeddings'}"


def build_methods(
    specs: Sequence[MethodSpec],
    embedding: EmbeddingConfig,
    make_trainer: Callable[[MethodSpec], L.Trainer],
    device: str = "auto",
) -> list[Method]:
    """Runtime methods from (freshly instantiated) specs, in config order."""
    models = {
        spec.name: ModelMethod(
            spec.name, spec.model, make_trainer(spec), spec.batch_size, device=device
        )
        for spec in specs
        if spec.model is not None
    }
    methods: list[Method] = []
    for spec in specs:
        if spec.model is not None:
            methods.append(models[spec.name])
            continue
        assert spec.detector is not None
        latent = None
        if spec.latent_model is not None:
            if spec.latent_model not in models:
                raise ValueError(
                    f"method {spec.name!r}: latent_model {spec.latent_model!r} is not a model "
                    f"method of this config (models: {sorted(models)})"
                )
            latent = models[spec.latent_model]
        methods.append(
            DetectorMethod(spec.name, spec.detector, embedding.merged(spec.embedding), latent)
        )
    return methods
