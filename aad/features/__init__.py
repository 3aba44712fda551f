"""GPU-ready feature front-end: log-mel, MFCC, STFT chroma and CENS from shared STFTs."""

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

__all__ = [
    "CENSConfig",
    "ChromaConfig",
    "FeatureConfig",
    "FeatureExtractor",
    "FeatureNormalizer",
    "MFCCConfig",
    "MelConfig",
    "STFTConfig",
    "clip_embedding",
    "seed_study_config",
    "stack_frames",
    "validate_waveform",
]
