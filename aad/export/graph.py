"""One ``nn.Module`` from raw PCM to scores, built from a trained ``AnomalyModule``.

:class:`ScoringGraph` maps float32 mono PCM ``(batch, samples)`` in [-1, 1] at the model's
sample rate to ``(clip_scores (batch,), frame_scores (batch, frames))``: the module's own
feature front-end parts (STFT, mel, MFCC, chroma/CENS, frame descriptors), the alignment of
the parts onto the first part's frames, frame stacking, the normalisation statistics, the
model and its score (``mean``, ``topk`` or ``mahalanobis``). Every step is written with tensor
ops whose sizes follow the input, so one traced/exported graph scores any clip length
(``ONNX`` dynamic axes; ``torch.jit.trace`` records the sizes).

It reuses the trained module's submodules (the same weights, filterbanks and windows), and
re-expresses in tensors the few steps ``AnomalyModule.score`` computes in Python from the clip
length (the LSTM-AE's window starts, the alignment indices, top-k's ``k``).
:class:`EmbeddingGraph` is the front-end of a detector on pooled feature embeddings.

Supported models: :data:`EXPORTABLE` (exact classes). Anything else raises
:class:`NotExportableError` naming the class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from aad.features.extractor import FeatureExtractor
from aad.features.pooling import clip_embedding
from aad.models.base import AnomalyModule


class NotExportableError(ValueError):
    """A model, detector or setting that ``aad.export`` cannot put into a file."""


EXPORTABLE = (
    "aad.models.lstm_ae.lightning_model.LSTMAE",
    "aad.models.dcase_ae.lightning_model.DCASEAE",
)
"""Model classes :class:`ScoringGraph` exports (the machine-id classifier has its own graph,
:class:`aad.export.classifier_graph.ClassifierGraph`)."""


def class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


class FrontEnd(nn.Module):
    """``(B, S)`` PCM -> ``(B, T, D)`` features, as ``FeatureExtractor.forward`` computes them
    (without its input checks and CPU chunking, which the runtime and caller do)."""

    def __init__(self, extractor: FeatureExtractor) -> None:
        super().__init__()
        self.extractor = extractor
        config = extractor.config
        self.stack = int(config.stack_frames)
        names = list(config.features)
        first = names[0]
        # (name, target step, target offset, own step, own offset) of parts needing alignment
        self.align_plan: list[tuple[str, float, float, float, float]] = []
        for name in names[1:]:
            own = (extractor.params[name], extractor._subsample(name))
            if own == (extractor.params[first], extractor._subsample(first)):
                continue  # same frames as the first part: the identity
            self.align_plan.append(
                (name, *_frame_grid(extractor, first), *_frame_grid(extractor, name))
            )

    def parts(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each part at its own frame rate ``{name: (B, T_i, D_i)}``."""
        return self.extractor._compute_parts(waveform)

    def align(self, parts: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """Parts on the first part's frames (nearest frame centre, as ``FeatureExtractor``)."""
        names = list(parts)
        target = parts[names[0]]
        plan = {name: rest for name, *rest in self.align_plan}
        aligned = [target]
        for name in names[1:]:
            part = parts[name]
            if name in plan:
                step_t, offset_t, step, offset = plan[name]
                times = offset_t + step_t * torch.arange(
                    target.shape[1], dtype=torch.float64, device=part.device
                )
                index = torch.round((times - offset) / step).long()
                index = torch.minimum(index.clamp_min(0), _last_index(part))
                part = part.index_select(1, index)
            aligned.append(part)
        return aligned

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        features = torch.cat(self.align(self.parts(waveform)), dim=-1)
        if self.stack > 1:  # stack_frames: (B, T, D) -> (B, T - k + 1, k * D)
            features = features.unfold(1, self.stack, 1).transpose(2, 3).flatten(2)
        return features


def _frame_grid(extractor: FeatureExtractor, name: str) -> tuple[float, float]:
    """Step and offset (samples) of part ``name``'s frames."""
    params = extractor.params[name]
    return float(params.hop_length * extractor._subsample(name)), float(params.frame_offset())


def _last_index(part: torch.Tensor) -> torch.Tensor:
    """``T_i - 1`` of a ``(B, T_i, D)`` part as a traced 0-dim tensor."""
    return torch.ones_like(part[0, :, 0], dtype=torch.long).sum() - 1


class LSTMAutoencoderGraph(nn.Module):
    """``LSTMAutoencoder.forward`` (eval mode) reading the encoder's final state from its
    output sequence: ``torch.export``'s shape rule for ``h_n`` of a batch-first LSTM with a
    symbolic batch is wrong in torch 2.11, the output sequence is not (same values)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.hidden = int(model.encoder.hidden_size)
        self.bidirectional = bool(model.encoder.bidirectional)

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        model = self.model
        encoded, _ = model.encoder(windows)  # (N, L, H * directions), last layer
        last = encoded[:, -1, : self.hidden]
        if self.bidirectional:  # the backward direction ends at frame 0
            last = torch.cat([last, encoded[:, 0, self.hidden :]], dim=-1)
        latent = model.to_latent(last)
        repeated = latent.unsqueeze(1).expand(-1, windows.shape[1], -1)
        decoded, _ = model.decoder(repeated)
        return model.head(decoded)


class LSTMWindows(nn.Module):
    """The LSTM-AE's scoring windows in tensors: non-overlapping windows of ``window`` frames,
    the last aligned to the clip end; errors averaged back onto the frames (``from_windows``).
    Clips need at least ``window`` frames (the runtime checks it)."""

    def __init__(self, model: nn.Module, window: int) -> None:
        super().__init__()
        self.model = LSTMAutoencoderGraph(model)
        self.window = int(window)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch, frames, dim = features.shape
        w = self.window
        starts = torch.arange(0, frames, w, device=features.device).clamp(max=frames - w)
        index = (starts[:, None] + torch.arange(w, device=features.device)).flatten()
        windows = features.index_select(1, index).reshape(-1, w, dim)  # (B * n, w, D)
        errors = (windows - self.model(windows)).reshape(batch, -1, dim)  # (B, n * w, D)
        total = features.new_zeros(batch, frames, dim).index_add(1, index, errors)
        count = features.new_zeros(frames).index_add(0, index, torch.ones_like(errors[0, :, 0]))
        return total / count[:, None]


class FrameWise(nn.Module):
    """A frame-wise autoencoder (DCASE AE): ``(B, T, D)`` -> signed errors ``(B, T, D)``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        frames = features.flatten(0, 1)
        return (frames - self.model(frames)).reshape(features.shape)


class Mahalanobis(nn.Module):
    """Squared Mahalanobis distance of error vectors, min over the fitted domains
    (``aad.scoring.ErrorCovariance.forward`` with its fitted statistics as constants)."""

    def __init__(self, means: torch.Tensor, precisions: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("means", means.float().clone())
        self.register_buffer("precisions", precisions.float().clone())

    def forward(self, errors: torch.Tensor) -> torch.Tensor:
        distances = []
        for index in range(self.means.shape[0]):
            centred = errors - self.means[index]
            distances.append(((centred @ self.precisions[index]) * centred).sum(dim=-1))
        return torch.stack(distances).amin(dim=0)


class ScoringGraph(nn.Module):
    """``(B, S)`` float32 PCM -> ``(clip_scores (B,), frame_scores (B, T'))``.

    Besides the graph, what the exporter records (every scoring graph has them):
    ``min_samples``, the shortest clip it scores; ``frame_step`` / ``frame_offset``, the
    samples between and to the centre of its scored frames; ``reference_batch``, the batch
    ``AnomalyModule.score`` gets to give the same scores.
    """

    def __init__(self, module: AnomalyModule) -> None:
        super().__init__()
        name = class_path(module)
        if name not in EXPORTABLE:
            raise NotExportableError(
                f"{name} is not yet exportable: aad.export supports "
                f"{', '.join(p.rsplit('.', 1)[1] for p in EXPORTABLE)} (a model class needs its "
                "scoring written in trace-friendly tensor ops in aad/export/graph.py first)"
            )
        if module.normalize and not module.normalizer.fitted:
            raise NotExportableError("the checkpoint's feature normaliser was never fitted")
        self.front_end = FrontEnd(module.features)
        self.normalize = bool(module.normalize)
        self.register_buffer("mean", module.normalizer.mean.detach().float().clone())
        self.register_buffer("std", module.normalizer.std.detach().float().clone())
        self.min_samples = min_samples(module)
        step, offset = _frame_grid(module.features, module.feature_config.features[0])
        stack = int(module.feature_config.stack_frames)  # a stack is centred on its middle
        self.frame_step, self.frame_offset = step, offset + step * (stack - 1) / 2
        model = module.model
        if name.endswith("LSTMAE"):
            self.errors: nn.Module = LSTMWindows(model, module.window)
        else:
            self.errors = FrameWise(model)
        self.score_name = module.score_name
        self.top_k = int(module.top_k)
        self.distance: nn.Module | None = None
        if module.error_covariance is not None:
            covariance = module.error_covariance
            if not covariance.fitted:
                raise NotExportableError("the mahalanobis score's statistics were never fitted")
            used = [i for i in range(covariance.domains) if covariance.count[i] > 0] or [0]
            self.distance = Mahalanobis(covariance.mean[used], covariance.precision[used])

    def reference_batch(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"waveform": waveform}

    def features(self, waveform: torch.Tensor) -> torch.Tensor:
        """Normalised features ``(B, T, D)`` (what ``AnomalyModule.prepare_features`` gives)."""
        features = self.front_end(waveform)
        return (features - self.mean) / self.std if self.normalize else features

    def forward(self, waveform: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        errors = self.errors(self.features(waveform))
        if self.distance is not None:
            frame_scores = self.distance(errors)
        else:
            frame_scores = errors.square().mean(dim=-1)
        if self.score_name == "topk":  # slicing keeps min(top_k, T) frames, as pool_frames
            top = frame_scores.sort(dim=1, descending=True).values[:, : self.top_k]
            return top.mean(dim=1), frame_scores
        return frame_scores.mean(dim=1), frame_scores


class EmbeddingGraph(nn.Module):
    """``(B, S)`` PCM -> ``(B, E)`` pooled clip embedding (``aad.embeddings``, ``features``
    source): each part pooled over its own frames with ``stats``, parts concatenated."""

    def __init__(self, extractor: FeatureExtractor, stats: Sequence[str]) -> None:
        super().__init__()
        self.front_end = FrontEnd(extractor)
        self.stats = list(stats)
        if "median" in self.stats:
            raise NotExportableError(
                "embedding statistic 'median' is not exportable (torch.quantile has no ONNX "
                "form); use mean, std, max or min"
            )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return clip_embedding(self.front_end.parts(waveform), "pooled", self.stats)


def build_graph(module: AnomalyModule) -> ScoringGraph:
    """The eval-mode scoring graph of a trained module (raises :class:`NotExportableError`)."""
    return ScoringGraph(module).eval()


def min_samples(module: AnomalyModule) -> int:
    """Shortest clip the graph scores: the front-end's minimum and, for the LSTM-AE, enough
    frames for one whole window."""
    extractor = module.features
    need = extractor.min_samples()
    window = int(getattr(module, "window", 1))
    while extractor.num_frames(need) < window:
        need += extractor.params[extractor.config.features[0]].hop_length
    return need
