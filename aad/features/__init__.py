"""GPU-ready feature front-end: log-mel, MFCC, STFT chroma and CENS, and librosa's frame
descriptors (RMS, centroid, bandwidth, rolloff, flatness, contrast, ZCR) from shared STFTs."""

from aad.features.config import (
    CENSConfig,
    ChromaConfig,
    FeatureConfig,
    MelConfig,
    MFCCConfig,
    STFTConfig,
    seed_study_config,
)
from aad.features.extractor import FeatureExtractor, stack_frames, validate_waveform
from aad.features.normalization import FeatureNormalizer
from aad.features.pooling import clip_embedding
from aad.features.spectral_config import (
    BandwidthConfig,
    CentroidConfig,
    ContrastConfig,
    FlatnessConfig,
    RMSConfig,
    RolloffConfig,
    ZCRConfig,
)

__all__ = [
    "BandwidthConfig",
    "CENSConfig",
    "CentroidConfig",
    "ChromaConfig",
    "ContrastConfig",
    "FeatureConfig",
    "FeatureExtractor",
    "FeatureNormalizer",
    "FlatnessConfig",
    "MFCCConfig",
    "MelConfig",
    "RMSConfig",
    "RolloffConfig",
    "STFTConfig",
    "ZCRConfig",
    "clip_embedding",
    "seed_study_config",
    "stack_frames",
    "validate_waveform",
]
