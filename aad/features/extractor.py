"""FeatureExtractor: a batch of waveforms -> frame features, on whatever device the batch is.

One STFT per distinct STFT setting per batch, shared by every part that uses it; mel energies
are shared too when ``mel`` and ``mfcc`` use the same filterbank, and so are the magnitude and
power spectra the frame descriptors (``aad.features.spectral``) read.
"""

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from aad.features.cens import CENS
from aad.features.chroma import ChromaFilterbank, normalize_frames
from aad.features.config import FeatureConfig
from aad.features.mel import DCT, MelFilterbank, log_compress
from aad.features.spectral import build_spectral_part, spectral_dim
from aad.features.spectral_config import SPECTRAL_NAMES
from aad.features.stft import STFT, STFTParams, power_spectrum, subsampled_count

PCM16_SCALE = 32768.0
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def validate_waveform(waveform: Any, clip_names: Sequence[str] | None = None) -> torch.Tensor:
    """Check and convert a batch to float32 ``(B, S)``.

    ``(S,)`` becomes ``(1, S)``; other ranks raise ``ValueError``. int16 PCM is divided by
    32768; float64/16/bf16 are cast to float32; other dtypes raise ``TypeError``. NaN/Inf raise
    ``ValueError`` naming the bad rows (and their ``clip_names`` when given).
    """
    if not isinstance(waveform, torch.Tensor):
        waveform = torch.as_tensor(np.asarray(waveform))
    if waveform.dim() == 1:
        waveform = waveform.unsqueeze(0)
    if waveform.dim() != 2:
        raise ValueError(
            f"waveform must be (batch, samples) or (samples,), got shape {tuple(waveform.shape)}"
        )
    if waveform.shape[0] == 0:
        raise ValueError("waveform batch is empty (0 clips)")
    if waveform.dtype == torch.int16:
        waveform = waveform.float() / PCM16_SCALE
    elif waveform.dtype in _FLOAT_DTYPES:
        waveform = waveform.float()
    else:
        raise TypeError(
            f"waveform dtype {waveform.dtype} not supported: give float32 in [-1, 1] "
            "(float64/float16/bfloat16 are cast) or int16 PCM"
        )
    row_sums = waveform.sum(dim=1)  # NaN/Inf in a row make its sum non-finite: one cheap pass
    if not bool(torch.isfinite(row_sums).all()):
        suspects = (~torch.isfinite(row_sums)).nonzero().flatten()
        rows = ~torch.isfinite(waveform[suspects]).all(dim=1)
        bad = suspects[rows].tolist() if bool(rows.any()) else suspects.tolist()
        names = ""
        if clip_names is not None:
            names = f" (clips: {', '.join(str(clip_names[i]) for i in bad)})"
        raise ValueError(f"waveform has NaN/Inf samples in batch rows {bad}{names}")
    return waveform


def stack_frames(features: torch.Tensor, k: int) -> torch.Tensor:
    """Stack k consecutive frames (DCASE baseline): ``(B, T, D) -> (B, T - k + 1, k * D)``."""
    if k == 1:
        return features
    batch, frames, dim = features.shape
    if frames < k:
        raise ValueError(f"cannot stack {k} frames from {frames} frames")
    windows = features.unfold(1, k, 1)  # (B, T - k + 1, D, k)
    return windows.transpose(2, 3).reshape(batch, frames - k + 1, k * dim)


class FeatureExtractor(nn.Module):
    """``(B, S)`` waveforms -> ``(B, T, D)`` frame features (parts concatenated per frame).

    Example::

        extractor = FeatureExtractor(FeatureConfig()).to(device)
        feats = extractor(batch["waveform"])           # (B, 313, 96) for 10 s at 16 kHz
        parts = extractor.forward_parts(batch["waveform"])  # {"mel": (B, 313, 64), ...}
    """

    cpu_chunk_bytes = 8 * 2**20
    """CPU batches run a few clips at a time so their spectra stay near this size (cache)."""

    def __init__(self, config: FeatureConfig | dict[str, Any] | None = None) -> None:
        super().__init__()
        if config is None:
            config = FeatureConfig()
        # a private copy: later edits to the caller's config cannot desync modules and signature
        self.config = FeatureConfig.from_dict(copy.deepcopy(config))
        self.config.validate()
        cfg = self.config
        sr = cfg.sample_rate
        self.params = {
            name: STFTParams.resolve(stft, sr) for name, stft in cfg.branch_stfts().items()
        }
        self._align_cache: dict[tuple[str, int, str, int, str], torch.Tensor | None] = {}
        self.stfts = nn.ModuleDict()
        for params in dict.fromkeys(self.params.values()):
            self.stfts[self._key(params)] = STFT(params)
        self.mels = nn.ModuleDict()
        self.dct: DCT | None = None
        self.chroma_fb: ChromaFilterbank | None = None
        self.cens: CENS | None = None
        self.spectral = nn.ModuleDict()
        for name in cfg.features:
            if name in SPECTRAL_NAMES:
                self.spectral[name] = build_spectral_part(name, cfg, self.params[name])
            params = self.params[name]
            if name in ("mel", "mfcc"):
                branch = getattr(cfg, name)
                self.mels[name] = MelFilterbank(
                    params.n_freqs, sr, branch.n_mels, branch.f_min, branch.f_max,
                    branch.mel_scale, branch.norm,
                )  # fmt: skip
            if name == "mfcc":
                m = cfg.mfcc
                self.dct = DCT(m.n_mfcc, m.n_mels, m.drop_first_coefficient)
            if name in ("chroma", "cens") and self.chroma_fb is None:
                c = cfg.chroma
                self.chroma_fb = ChromaFilterbank(
                    sr, params.n_fft, c.n_chroma, c.tuning, c.ctroct, c.octwidth, c.base_c
                )
            if name == "cens":
                self.cens = CENS(cfg.cens.win_len_smooth, cfg.cens.norm, cfg.cens.subsample)

    @staticmethod
    def _key(params: STFTParams) -> str:
        return "stft_" + "_".join(str(v) for v in vars(params).values())

    # ----------------------------------------------------------------- shapes and identity
    def signature(self) -> str:
        """Short stable hash of the config (see :meth:`FeatureConfig.signature`)."""
        return self.config.signature()

    def _subsample(self, name: str) -> int:
        return getattr(self.config, name).subsample

    def part_dims(self) -> dict[str, int]:
        """Feature dimension of each part, in concatenation order."""
        cfg = self.config
        dims = {
            "mel": cfg.mel.n_mels,
            "mfcc": cfg.mfcc.n_mfcc - int(cfg.mfcc.drop_first_coefficient),
            "chroma": cfg.chroma.n_chroma,
            "cens": cfg.chroma.n_chroma,
            **{name: spectral_dim(name, cfg) for name in SPECTRAL_NAMES},
        }
        return {name: dims[name] for name in cfg.features}

    def part_frames(self, num_samples: int) -> dict[str, int]:
        """Frame count of each part at its own rate (``forward_parts``)."""
        return {
            name: subsampled_count(self.params[name].num_frames(num_samples), self._subsample(name))
            for name in self.config.features
        }

    def num_frames(self, num_samples: int) -> int:
        """Frames ``T`` of ``forward`` for a clip of ``num_samples`` (after stacking)."""
        first = self.config.features[0]
        return max(self.part_frames(num_samples)[first] - self.config.stack_frames + 1, 0)

    def output_dim(self, num_samples: int | None = None) -> int:
        """Frame dimension ``D`` of ``forward`` (independent of ``num_samples``)."""
        return sum(self.part_dims().values()) * self.config.stack_frames

    def embedding_dim(
        self, num_samples: int, mode: str = "pooled", stats: Sequence[str] = ("mean", "std")
    ) -> int:
        """Width ``E`` of ``clip_embedding(self.forward_parts(x), mode, stats)``."""
        dims = self.part_dims()
        if mode == "pooled":
            return len(stats) * sum(dims.values())
        if mode == "flatten":
            frames = self.part_frames(num_samples)
            return sum(frames[name] * dim for name, dim in dims.items())
        raise ValueError(f"mode={mode!r} not in ('pooled', 'flatten')")

    def _cpu_chunk(self, num_samples: int) -> int:
        per_clip = sum(
            8 * p.n_freqs * max(p.num_frames(num_samples), 1) for p in set(self.params.values())
        )
        return int(min(max(self.cpu_chunk_bytes // per_clip, 1), 64))

    def min_samples(self) -> int:
        """Shortest clip every part accepts."""
        need = max(p.min_samples() for p in self.params.values())
        first = self.config.features[0]
        k = self.config.stack_frames
        if k == 1:
            return need

        def enough(samples: int) -> bool:  # the first part must also give k frames to stack
            frames = self.params[first].num_frames(samples)
            return subsampled_count(frames, self._subsample(first)) >= k

        high = need
        while not enough(high):
            high *= 2
        low = need - 1  # enough(low) is False or low is below every part's minimum
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (low, middle) if enough(middle) else (middle, high)
        return max(high, need)

    def frame_times(self, name: str, num_frames: int) -> np.ndarray:
        """Centre of each frame of part ``name`` in samples."""
        params = self.params[name]
        step = params.hop_length * self._subsample(name)
        return params.frame_offset() + step * np.arange(num_frames)

    # ----------------------------------------------------------------------- computation
    def forward_parts(
        self, waveform: torch.Tensor, clip_names: Sequence[str] | None = None
    ) -> dict[str, torch.Tensor]:
        """Each part at its own frame rate: ``{name: (B, T_i, D_i)}``."""
        waveform = validate_waveform(waveform, clip_names)
        self._check_length(waveform.shape[-1])
        chunk = self._cpu_chunk(waveform.shape[-1]) if waveform.device.type == "cpu" else 0
        with torch.autocast(waveform.device.type, enabled=False):  # features stay float32
            if not chunk or waveform.shape[0] <= chunk:
                return self._compute_parts(waveform)
            pieces = [self._compute_parts(rows) for rows in waveform.split(chunk)]
        return {name: torch.cat([p[name] for p in pieces]) for name in pieces[0]}

    def _compute_parts(self, waveform: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config
        spectra: dict[str, torch.Tensor] = {}
        powers: dict[tuple[str, float], torch.Tensor] = {}
        mels: dict[tuple, torch.Tensor] = {}
        chroma_raw: torch.Tensor | None = None

        def power_of(name: str, power: float) -> torch.Tensor:
            key = self._key(self.params[name])
            if (key, power) not in powers:
                if key not in spectra:
                    spectra[key] = self.stfts[key](waveform)
                powers[(key, power)] = power_spectrum(spectra[key], power)
            return powers[(key, power)]

        def mel_of(name: str) -> torch.Tensor:
            b = getattr(cfg, name)
            key = (self._key(self.params[name]), b.n_mels, b.f_min, b.f_max, b.mel_scale, b.norm,
                   b.power)  # fmt: skip
            if key not in mels:
                mels[key] = self.mels[name](power_of(name, b.power))
            return mels[key]

        parts: dict[str, torch.Tensor] = {}
        for name in cfg.features:
            if name == "mel":
                b = cfg.mel
                out = log_compress(mel_of(name), b.log, b.eps, b.power, b.top_db)
            elif name == "mfcc":
                b = cfg.mfcc
                out = self.dct(log_compress(mel_of(name), b.log, b.eps, b.power, b.top_db))
            elif name in self.spectral:  # zcr (power None) frames the waveform itself
                part = self.spectral[name]
                out = part(waveform if part.power is None else power_of(name, part.power))
            else:
                if chroma_raw is None:
                    chroma_raw = self.chroma_fb(power_of(name, cfg.chroma.power))
                if name == "chroma":
                    out = normalize_frames(chroma_raw, cfg.chroma.norm, dim=-2)
                else:
                    out = self.cens(chroma_raw)
            step = self._subsample(name) if name != "cens" else 1  # CENS subsamples itself
            if step > 1:
                out = out[..., ::step]
            parts[name] = out.transpose(1, 2).contiguous()
        return parts

    def forward(
        self, waveform: torch.Tensor, clip_names: Sequence[str] | None = None
    ) -> torch.Tensor:
        """Parts aligned to the first part's frames, concatenated, then frame-stacked."""
        parts = self.forward_parts(waveform, clip_names)
        features = torch.cat(list(self.align(parts).values()), dim=-1)
        return stack_frames(features, self.config.stack_frames)

    def align(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map every part onto the first part's frames by nearest frame centre in time."""
        names = list(parts)
        target_frames = parts[names[0]].shape[1]
        aligned = {names[0]: parts[names[0]]}
        for name in names[1:]:
            part = parts[name]
            index = self._align_index(names[0], target_frames, name, part.shape[1], part.device)
            aligned[name] = part if index is None else part[:, index, :]
        return aligned

    def _align_index(
        self, target: str, target_frames: int, name: str, frames: int, device: torch.device
    ) -> torch.Tensor | None:
        """Frame indices of part ``name`` nearest to ``target``'s frames (``None``: identity),
        cached per shape and device so a batch costs no host-to-device copy."""
        key = (target, target_frames, name, frames, str(device))
        if key not in self._align_cache:
            target_times = self.frame_times(target, target_frames)
            params = self.params[name]
            step = params.hop_length * self._subsample(name)
            index = np.rint((target_times - params.frame_offset()) / step).astype(np.int64)
            index = np.clip(index, 0, frames - 1)
            identity = frames == target_frames and np.array_equal(index, np.arange(frames))
            self._align_cache[key] = None if identity else torch.from_numpy(index).to(device)
        return self._align_cache[key]

    def _check_length(self, num_samples: int) -> None:
        for name, params in self.params.items():
            need = params.min_samples()
            if num_samples < need:
                raise ValueError(
                    f"clip of {num_samples} samples is shorter than part {name!r} needs "
                    f"({need} samples: n_fft={params.n_fft}, win_length={params.win_length}, "
                    f"hop={params.hop_length}, center={params.center}, "
                    f"framing={params.framing!r})"
                )
        first = self.config.features[0]
        k = self.config.stack_frames
        frames = subsampled_count(
            self.params[first].num_frames(num_samples), self._subsample(first)
        )
        if frames < k:
            raise ValueError(
                f"clip of {num_samples} samples gives {frames} frames, fewer than stack_frames={k}"
            )
