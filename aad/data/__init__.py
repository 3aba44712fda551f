"""Data layer: manifests from every supported layout, WAV decoding, synthetic data, batches.

Names are imported lazily, so ``import aad.data.manifest`` does not pull in Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClipRecord": "aad.data.manifest",
    "Manifest": "aad.data.manifest",
    "DatasetNotFoundError": "aad.data.readers",
    "LayoutNotRecognisedError": "aad.data.readers",
    "detect_layout": "aad.data.readers",
    "list_machine_types": "aad.data.readers",
    "read_manifest": "aad.data.readers",
    "AudioDecodeError": "aad.data.audio",
    "load_waveform": "aad.data.audio",
    "screen_clips": "aad.data.audio",
    "collect_wav_files": "aad.data.files",
    "walk_wav_files": "aad.data.files",
    "Group": "aad.data.splits",
    "make_groups": "aad.data.splits",
    "generate_dataset": "aad.data.synthetic",
    "generate_if_missing": "aad.data.synthetic",
    "ClipDataset": "aad.data.dataset",
    "MachineSoundDataModule": "aad.data.datamodule",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'aad.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return __all__
