"""Feature configuration: nested dataclasses with defaults, YAML- and jsonargparse-friendly.

Every knob of the front-end lives here. ``FeatureConfig.from_dict(asdict(cfg)) == cfg`` holds,
and :meth:`FeatureConfig.signature` hashes the config for caches and mismatch checks.

Example (the default, used by the LSTM-AE)::

    cfg = FeatureConfig()  # 16 kHz, one STFT (n_fft 1024, hop 512) -> mel 64 + mfcc 20 + cens 12
"""

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any

from aad.features.spectral_config import (
    SPECTRAL_CONFIGS,
    SPECTRAL_NAMES,
    BandwidthConfig,
    CentroidConfig,
    ContrastConfig,
    FlatnessConfig,
    RMSConfig,
    RolloffConfig,
    ZCRConfig,
)
from aad.features.stft_config import STFTConfig

FEATURE_NAMES = ("mel", "mfcc", "chroma", "cens", *SPECTRAL_NAMES)
LOG_MODES = ("db", "dcase", "natural", "log10", "none")
WINDOWS = ("hann", "hamming", "blackman", "rect")
FRAMINGS = ("stft", "speechpy")
SIGNATURE_VERSION = "aad-features-v1"


@dataclass
class MelConfig:
    """Log-mel energies (torchaudio mel filterbank on ``|STFT| ** power``).

    ``log``: ``db`` = ``20 / power * log10(max(mel, eps))`` (librosa ``power_to_db``, ref 1,
    ``amin = eps``, then ``top_db`` per clip), ``dcase`` = ``20 / power * log10(mel + eps)``,
    ``natural`` = ``ln(mel + eps)``, ``log10`` = ``log10(mel + eps)``, ``none`` = linear.
    ``stft=None`` uses ``FeatureConfig.stft``; ``subsample=d`` keeps every d-th frame.
    """

    n_mels: int = 64
    f_min: float = 0.0
    f_max: float | None = None
    mel_scale: str = "slaney"
    norm: str | None = "slaney"
    power: float = 2.0
    log: str = "db"
    eps: float = 1e-10
    top_db: float | None = None
    subsample: int = 1
    stft: STFTConfig | None = None


@dataclass
class MFCCConfig(MelConfig):
    """MFCC: orthonormal DCT-II (torchaudio ``create_dct``) of the log-mel energies.

    Mel/log fields as in :class:`MelConfig`; the defaults follow ``librosa.feature.mfcc``
    (power_to_db with ``top_db=80``). ``drop_first_coefficient`` drops c0 after the DCT, so
    the output has ``n_mfcc - 1`` coefficients.
    """

    top_db: float | None = 80.0
    n_mfcc: int = 20
    drop_first_coefficient: bool = False


@dataclass
class ChromaConfig:
    """STFT chroma, a port of ``librosa.feature.chroma_stft`` (``tuning`` is given, not estimated).

    ``norm`` is the per-frame norm of the ``chroma`` part (``inf`` = max, as librosa; ``None``
    = raw). The ``cens`` part reuses this filterbank and STFT.
    """

    n_chroma: int = 12
    tuning: float = 0.0
    power: float = 2.0
    norm: float | None = math.inf
    ctroct: float = 5.0
    octwidth: float | None = 2.0
    base_c: bool = True
    subsample: int = 1
    stft: STFTConfig | None = None


@dataclass
class CENSConfig:
    """CENS post-processing of the STFT chroma (librosa ``chroma_cens`` steps).

    Per frame L1 norm, quantisation at 0.4/0.2/0.1/0.05 (weights 0.25), Hann smoothing over
    ``win_len_smooth`` frames (``None``/0 = off), keep every ``subsample``-th frame, per-frame
    ``norm`` (2 = L2).
    """

    win_len_smooth: int | None = 41
    norm: float | None = 2.0
    subsample: int = 1


@dataclass
class FeatureConfig:
    """Everything the feature front-end computes, in one place.

    ``features`` names the parts in concatenation order (``mel``, ``mfcc``, ``chroma``,
    ``cens``, and the frame descriptors ``rms``, ``centroid``, ``bandwidth``, ``rolloff``,
    ``flatness``, ``contrast``, ``zcr``); the first one sets the frame grid of ``forward``.
    ``stack_frames=k`` stacks k consecutive frames: ``(B, T, D) -> (B, T - k + 1, k * D)``.
    """

    sample_rate: int = 16000
    features: list[str] = field(default_factory=lambda: ["mel", "mfcc", "cens"])
    stft: STFTConfig = field(default_factory=STFTConfig)
    mel: MelConfig = field(default_factory=MelConfig)
    mfcc: MFCCConfig = field(default_factory=MFCCConfig)
    chroma: ChromaConfig = field(default_factory=ChromaConfig)
    cens: CENSConfig = field(default_factory=CENSConfig)
    stack_frames: int = 1
    rms: RMSConfig = field(default_factory=RMSConfig)
    centroid: CentroidConfig = field(default_factory=CentroidConfig)
    bandwidth: BandwidthConfig = field(default_factory=BandwidthConfig)
    rolloff: RolloffConfig = field(default_factory=RolloffConfig)
    flatness: FlatnessConfig = field(default_factory=FlatnessConfig)
    contrast: ContrastConfig = field(default_factory=ContrastConfig)
    zcr: ZCRConfig = field(default_factory=ZCRConfig)

    def __post_init__(self) -> None:
        if isinstance(self.features, str):
            self.features = [self.features]
        self.features = list(self.features)
        for name in _FIELD_TYPES:
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, _build(_FIELD_TYPES[name], value, name))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` for unknown names or out-of-range values."""
        if not self.features:
            raise ValueError("FeatureConfig.features is empty: name at least one feature")
        unknown = [name for name in self.features if name not in FEATURE_NAMES]
        if unknown or len(set(self.features)) != len(self.features):
            raise ValueError(
                f"FeatureConfig.features={list(self.features)}: each must be one of "
                f"{FEATURE_NAMES}, at most once"
            )
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if self.stack_frames < 1:
            raise ValueError(f"stack_frames must be >= 1, got {self.stack_frames}")
        for name in ("mel", "mfcc"):
            branch = getattr(self, name)
            if branch.log not in LOG_MODES:
                raise ValueError(f"{name}.log={branch.log!r} not in {LOG_MODES}")
            if branch.mel_scale not in ("htk", "slaney"):
                raise ValueError(f"{name}.mel_scale={branch.mel_scale!r} not in ('htk', 'slaney')")
            if branch.norm not in (None, "slaney"):
                raise ValueError(f"{name}.norm={branch.norm!r} not in (None, 'slaney')")
        if self.mfcc.n_mfcc > self.mfcc.n_mels:
            raise ValueError(f"mfcc.n_mfcc={self.mfcc.n_mfcc} > mfcc.n_mels={self.mfcc.n_mels}")
        if self.mfcc.drop_first_coefficient and self.mfcc.n_mfcc < 2:
            raise ValueError("mfcc.drop_first_coefficient needs n_mfcc >= 2")
        for name in ("mel", "mfcc", "chroma", "cens", *SPECTRAL_NAMES):
            if getattr(self, name).subsample < 1:
                raise ValueError(f"{name}.subsample must be >= 1")
        for name in SPECTRAL_NAMES:  # only the parts computed: an unused part has no say
            if name in self.features:
                getattr(self, name).validate(self.sample_rate)
        smooth = self.cens.win_len_smooth
        if smooth is not None and smooth < 0:
            raise ValueError(f"cens.win_len_smooth must be None or >= 0, got {smooth}")
        for name, stft in self.branch_stfts().items():
            if stft.window not in WINDOWS:
                raise ValueError(f"{name} stft.window={stft.window!r} not in {WINDOWS}")
            if stft.framing not in FRAMINGS:
                raise ValueError(f"{name} stft.framing={stft.framing!r} not in {FRAMINGS}")

    def branch_stft(self, name: str) -> STFTConfig:
        """The STFT settings a part uses (its own override, else the shared one)."""
        source = "chroma" if name == "cens" else name
        own = getattr(self, source).stft
        return own if own is not None else self.stft

    def branch_stfts(self) -> dict[str, STFTConfig]:
        """STFT settings of every requested part."""
        return {name: self.branch_stft(name) for name in self.features}

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (``dataclasses.asdict``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: "dict[str, Any] | FeatureConfig") -> "FeatureConfig":
        """Build from a (possibly partial) nested dict; unknown keys raise ``ValueError``."""
        if isinstance(data, FeatureConfig):
            return data
        return _build(cls, dict(data), "FeatureConfig")

    def signature(self) -> str:
        """Short stable hash (12 hex chars) of every field.

        Frame-descriptor blocks (``rms`` ... ``zcr``) left at their defaults are not hashed, so
        a config that does not touch them keeps the signature it had before they existed
        (checkpoints and caches stay valid); any non-default value in them is hashed.
        """
        data = asdict(self)
        for name in SPECTRAL_NAMES:
            if getattr(self, name) == SPECTRAL_CONFIGS[name]():
                del data[name]
        payload = json.dumps([SIGNATURE_VERSION, data], sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


_FIELD_TYPES: dict[str, type] = {
    "stft": STFTConfig,
    "mel": MelConfig,
    "mfcc": MFCCConfig,
    "chroma": ChromaConfig,
    "cens": CENSConfig,
    **SPECTRAL_CONFIGS,
}


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    """Instantiate dataclass ``cls`` from ``data``, recursing into nested config dicts."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    kwargs = {}
    for key, value in data.items():
        if key == "stft" or (cls is FeatureConfig and key in _FIELD_TYPES):
            sub = STFTConfig if key == "stft" else _FIELD_TYPES[key]
            if isinstance(value, dict):
                value = _build(sub, value, f"{where}.{key}")
            elif value is not None and not is_dataclass(value):
                raise ValueError(f"{where}.{key} must be a mapping or None, got {value!r}")
        kwargs[key] = value
    return cls(**kwargs)


def seed_study_config() -> FeatureConfig:
    """The seed study's three feature sets at their own rates (10 s at 16 kHz).

    ``mel``: speechpy-style LMFE, 1 s frames every 0.75 s, FFT of the first 2048 samples,
    64 HTK filters, natural log -> 12 x 64. ``mfcc``: torchaudio MFCC semantics (n_fft 16000,
    window 1600, hop 1200, 64 HTK mels, ln(mel + 1e-6), 13 coefficients, c0 dropped)
    -> 134 x 12. ``cens``: STFT chroma (n_fft 4096, hop 512, no octave weighting) with CENS
    smoothing 41 and every 5th frame -> 63 x 12. Use ``forward_parts`` for these.
    """
    return FeatureConfig(
        sample_rate=16000,
        features=["mel", "mfcc", "cens"],
        mel=MelConfig(
            n_mels=64, mel_scale="htk", norm=None, log="natural", eps=2.220446049250313e-16,
            stft=STFTConfig(
                n_fft=2048, win_seconds=1.0, hop_seconds=0.75, window="rect", framing="speechpy"
            ),
        ),
        mfcc=MFCCConfig(
            n_mfcc=13, drop_first_coefficient=True, n_mels=64, mel_scale="htk", norm=None,
            log="natural", eps=1e-6, top_db=None,
            stft=STFTConfig(n_fft=16000, win_length=1600, hop_length=1200, pad_mode="reflect"),
        ),
        chroma=ChromaConfig(octwidth=None, stft=STFTConfig(n_fft=4096, hop_length=512)),
        cens=CENSConfig(win_len_smooth=41, subsample=5),
    )  # fmt: skip
