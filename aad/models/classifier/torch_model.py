"""A compact machine-id classifier: log-mel (+ optional waveform branch) -> embedding -> ArcFace.

The network is a small MobileFaceNet-like stack (inverted-residual blocks of depthwise 3x3
convolutions with BatchNorm and ReLU) over ``(B, T, n_mels)`` normalised log-mel crops.
With ``waveform_branch=True`` a learnable front-end in the style of STgram (Liu et al., 2022)
turns the raw crop into a ``(B, n_mels, T)`` "Tgram" that is stacked with the log-mel map as a
second input channel. ``forward`` returns the embedding; :class:`ArcFaceHead` turns embeddings
into logits (additive angular margin on the target class while training).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv2d -> BatchNorm2d -> ReLU (no activation with ``act=False``; ReLU, not MobileFaceNet's
    PReLU, whose backward pass is several times slower on CPU)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
            nn.BatchNorm2d(c_out),
        ]
        if act:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class Bottleneck(nn.Module):
    """MobileFaceNet bottleneck: 1x1 expand -> depthwise 3x3 (stride) -> 1x1 project (+ skip)."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = c_in * expansion
        self.body = nn.Sequential(
            ConvBNAct(c_in, hidden, 1),
            ConvBNAct(hidden, hidden, 3, stride, groups=hidden),
            ConvBNAct(hidden, c_out, 1, act=False),
        )
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.residual else out


class WaveformBranch(nn.Module):
    """STgram's Tgram: strided Conv1d on the raw crop, then three Conv1d blocks.

    ``(B, L)`` -> ``(B, n_mels, T)`` with ``T = L // hop_length + 1``: the frame grid of a
    centred STFT with the same hop, so it lines up with the log-mel frames.
    """

    def __init__(self, n_mels: int, win_length: int = 1024, hop_length: int = 512) -> None:
        super().__init__()
        self.hop_length = hop_length
        self.front = nn.Conv1d(1, n_mels, win_length, hop_length, win_length // 2, bias=False)
        self.blocks = nn.Sequential(
            *(
                nn.Sequential(
                    nn.BatchNorm1d(n_mels),
                    nn.LeakyReLU(0.2),
                    nn.Conv1d(n_mels, n_mels, 3, 1, 1, bias=False),
                )
                for _ in range(3)
            )
        )

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.front(waveform.unsqueeze(1)))


def _match_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """Crop or edge-pad the last axis of ``x`` to ``frames``."""
    if x.shape[-1] >= frames:
        return x[..., :frames]
    return F.pad(x, (0, frames - x.shape[-1]), mode="replicate")


class MachineClassifier(nn.Module):
    """Log-mel crops ``(B, T, n_mels)`` (+ raw crops ``(B, L)``) -> embeddings ``(B, E)``.

    ``channels`` are the widths of the stem and the two downsampling stages; each stage is
    one strided and one residual bottleneck. The pooled head is MobileFaceNet's global
    depthwise convolution over frequency (position in frequency matters for machine sounds),
    then a mean over time, a 1x1 projection to ``embedding_dim`` and BatchNorm.

    >>> model = MachineClassifier(n_mels=32, num_classes=3, embedding_dim=16)
    >>> model(torch.randn(4, 20, 32)).shape
    torch.Size([4, 16])
    """

    def __init__(
        self,
        n_mels: int,
        num_classes: int,
        embedding_dim: int = 128,
        channels: tuple[int, int, int] = (32, 64, 128),
        waveform_branch: bool = False,
        win_length: int = 1024,
        hop_length: int = 512,
        arcface_scale: float = 30.0,
        arcface_margin: float = 0.5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.embedding_dim = embedding_dim
        self.waveform = WaveformBranch(n_mels, win_length, hop_length) if waveform_branch else None
        c0, c1, c2 = channels
        self.stem = nn.Sequential(
            ConvBNAct(2 if waveform_branch else 1, c0, 3, stride=2),
            ConvBNAct(c0, c0, 3, groups=c0),
        )
        self.stages = nn.Sequential(
            Bottleneck(c0, c1, 2), Bottleneck(c1, c1, 1),
            Bottleneck(c1, c2, 2), Bottleneck(c2, c2, 1),
        )  # fmt: skip
        freq_out = n_mels
        for _ in range(3):  # stem and two strided stages, each 3x3 stride 2 with padding 1
            freq_out = (freq_out - 1) // 2 + 1
        self.gdc = nn.Sequential(
            nn.Conv2d(c2, c2, (freq_out, 1), groups=c2, bias=False), nn.BatchNorm2d(c2)
        )
        self.dropout = nn.Dropout(dropout)
        self.project = nn.Linear(c2, embedding_dim, bias=False)
        self.bn = nn.BatchNorm1d(embedding_dim)
        self.head = ArcFaceHead(embedding_dim, num_classes, arcface_scale, arcface_margin)

    @property
    def uses_waveform(self) -> bool:
        """Whether ``forward`` needs the raw crops."""
        return self.waveform is not None

    def forward(self, features: torch.Tensor, waveform: torch.Tensor | None = None) -> torch.Tensor:
        """``(B, T, n_mels)`` normalised log-mels (+ ``(B, L)`` raw crops) -> ``(B, E)``."""
        if features.dim() != 3 or features.shape[-1] != self.n_mels:
            raise ValueError(
                f"features must be (batch, frames, {self.n_mels}), got {tuple(features.shape)}"
            )
        x = features.transpose(1, 2).unsqueeze(1)  # (B, 1, n_mels, T)
        if self.waveform is not None:
            if waveform is None:
                raise ValueError("waveform_branch=True: forward needs the raw crops (B, L)")
            tgram = _match_frames(self.waveform(waveform), x.shape[-1])
            x = torch.cat([x, tgram.unsqueeze(1).to(x.dtype)], dim=1)
        x = self.stages(self.stem(x))
        x = self.gdc(x).mean(dim=(2, 3))  # (B, C)
        return self.bn(self.project(self.dropout(x)))

    def logits(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """ArcFace margin logits with ``labels`` (training), scaled cosines without."""
        return self.head(embedding, labels)


class ArcFaceHead(nn.Module):
    """Additive angular margin (Deng et al., 2019): ``s * cos(theta_y + m)`` for the target.

    Without labels it returns ``s * cos(theta)`` for every class (softmax of these gives the
    class probabilities used for scoring). Computed in float32 even under autocast.
    Where ``theta + m`` would pass pi the usual fallback ``cos(theta) - m * sin(m)`` keeps the
    target logit monotonic in theta.
    """

    def __init__(
        self, embedding_dim: int, num_classes: int, scale: float = 30.0, margin: float = 0.5
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.scale = scale
        self.margin = margin
        self.weight = nn.Parameter(torch.empty(num_classes, embedding_dim))
        nn.init.xavier_uniform_(self.weight)

    def cosine(self, embedding: torch.Tensor) -> torch.Tensor:
        """``(B, C)`` cosine similarity of each embedding to each class centre (float32)."""
        with torch.autocast(embedding.device.type, enabled=False):
            return F.normalize(embedding.float(), dim=1) @ F.normalize(self.weight.float(), dim=1).T

    def forward(self, embedding: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        cosine = self.cosine(embedding)
        if labels is None or self.margin == 0.0:
            return self.scale * cosine
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(f"labels must be in [0, {self.num_classes}), got {labels.tolist()}")
        m = self.margin
        sine = (1.0 - cosine.square()).clamp_min(1e-7).sqrt()
        with_margin = cosine * math.cos(m) - sine * math.sin(m)
        with_margin = torch.where(cosine > math.cos(math.pi - m), with_margin,
                                  cosine - math.sin(math.pi - m) * m)  # fmt: skip
        target = F.one_hot(labels, self.num_classes).bool()
        return self.scale * torch.where(target, with_margin, cosine)


def arcface_loss(
    model: MachineClassifier,
    embedding: torch.Tensor,
    labels: torch.Tensor,
    partner: torch.Tensor | None = None,
    lam: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of the ArcFace margin logits.

    With mixup (``partner``, ``lam`` from :func:`aad.models.classifier.augment.mixup`) each
    row's loss is ``lam * CE(labels) + (1 - lam) * CE(labels[partner])``, the margin applied
    to each label in turn.
    """
    loss = F.cross_entropy(model.logits(embedding, labels), labels, reduction="none")
    if partner is None or lam is None:
        return loss.mean()
    other = labels[partner]
    loss_other = F.cross_entropy(model.logits(embedding, other), other, reduction="none")
    return (lam * loss + (1 - lam) * loss_other).mean()


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor | None]]
) -> None:
    """Re-estimate every BatchNorm's running mean/var as the plain average over ``batches``
    of ``(features, waveform_or_None)``, e.g. the training clips' crops after training.

    A short training run leaves the running statistics (momentum 0.1) partly at their
    initial values and weighted towards augmented crops; this pass fixes both.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative moving average
    model.train()
    for features, waveform in batches:
        model(features, waveform)
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(was_training)
