"""The PyOD 3.6 audio detectors a user would pick instead of aad, as functions on file lists.

    scores = peer_scores("pyod_for_audio_fast", train_paths, test_paths, seed=0)

Peers (higher score = more anomalous, PyOD's convention and aad's):

- ``pyod_for_audio_fast``: ``EmbeddingOD.for_audio("fast")``: PyOD's 74 handcrafted features
  (librosa at 22.05 kHz: MFCC 20 + chroma 12 + centroid, bandwidth, rolloff, zero-crossing
  rate, RMS; mean and std over frames), standardised, then ``IForest(random_state=seed)``.
- ``pyod_for_audio_balanced``: the same features, then ``KNN(n_neighbors=min(5, n_train - 1))``
  (PyOD's default k = 5 needs more than 5 training clips).
- ``pyod_audio_ae``: ``AudioAE(sr=16000, random_state=seed)``, otherwise PyOD's defaults
  (64 log-mels x 5 frames, dense AE 320-128-32-8, 40 epochs; clip score = mean window error).

Clips are decoded with soundfile and handed to PyOD as ``(waveform, sample_rate)`` tuples of
one channel (``channel=0``, as aad reads multichannel MIMII; PyOD alone would mix every
channel to mono). For mono files this gives bit-identical features to passing the path.
The 74 features of a clip are computed once per process and shared by both ``for_audio``
peers (``EmbeddingOD`` with a callable encoder; standardisation and detector are PyOD's).
Without pyod (``pip install -e '.[bench]'``) :func:`peer_scores` raises
:class:`PeerUnavailableError`, which ``benchmarks/quality.py`` turns into a skipped-peer note.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import numpy as np
import soundfile as sf

PEERS = ("pyod_for_audio_fast", "pyod_for_audio_balanced", "pyod_audio_ae")
AUDIO_AE_SAMPLE_RATE = 16000
KNN_MAX_NEIGHBOURS = 5
_FEATURES: dict[tuple[str, int | str], np.ndarray] = {}


class PeerUnavailableError(RuntimeError):
    """A peer's packages (pyod, librosa) are not installed."""


def missing_peer_packages() -> str | None:
    """Why the peers cannot run (a one-line note), or None when pyod and librosa import."""
    for package in ("pyod", "librosa"):
        try:
            importlib.import_module(package)
        except ImportError as err:
            return (
                f"PyOD peers skipped: {package} is not installed ({err}); "
                "install them with pip install -e '.[bench]'"
            )
    return None


def load_clip(path: str, channel: int | str = 0) -> tuple[np.ndarray, int]:
    """``(float32 waveform, sample_rate)`` of one channel (an index, or ``"mean"``)."""
    data, sample_rate = sf.read(path, dtype="float32", always_2d=True)
    if channel == "mean":
        return data.mean(axis=1), int(sample_rate)
    if int(channel) >= data.shape[1]:
        raise ValueError(f"{path} has {data.shape[1]} channel(s); channel {channel} asked")
    return np.ascontiguousarray(data[:, int(channel)]), int(sample_rate)


def audio_features(paths: Sequence[str], channel: int | str = 0) -> np.ndarray:
    """PyOD's 74 ``for_audio`` features per clip, ``(len(paths), 74)``, memoised per path."""
    from pyod.utils.encoders.audio import AudioFeatureEncoder

    encoder = AudioFeatureEncoder()
    rows = []
    for path in paths:
        key = (str(path), channel)
        if key not in _FEATURES:
            _FEATURES[key] = encoder.encode([load_clip(str(path), channel)], show_progress=False)[0]
        rows.append(_FEATURES[key])
    return np.stack(rows)


def _require_pyod() -> None:
    reason = missing_peer_packages()
    if reason is not None:
        raise PeerUnavailableError(reason)


def peer_scores(
    name: str,
    train_paths: Sequence[str],
    test_paths: Sequence[str],
    *,
    seed: int = 0,
    channel: int | str = 0,
) -> np.ndarray:
    """Fit peer ``name`` on the normal ``train_paths``; anomaly scores of ``test_paths``.

    Raises :class:`PeerUnavailableError` without pyod, ``ValueError`` for an unknown name
    or too few training clips.
    """
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; known: {', '.join(PEERS)}")
    _require_pyod()
    train_paths, test_paths = [str(p) for p in train_paths], [str(p) for p in test_paths]
    if len(train_paths) < 2:
        raise ValueError(f"{name}: needs at least 2 training clips, got {len(train_paths)}")
    if not test_paths:
        raise ValueError(f"{name}: no test clips")
    if name == "pyod_audio_ae":
        from pyod.models.audio_ae import AudioAE

        detector = AudioAE(sr=AUDIO_AE_SAMPLE_RATE, random_state=seed)
        detector.fit([load_clip(p, channel) for p in train_paths])
        scores = detector.decision_function([load_clip(p, channel) for p in test_paths])
    else:
        from pyod.models.embedding import EmbeddingOD
        from pyod.models.knn import KNN

        def encode(paths: Sequence[str]) -> np.ndarray:
            return audio_features(paths, channel)

        if name == "pyod_for_audio_fast":
            detector = EmbeddingOD.for_audio("fast", encoder=encode, random_state=seed)
        else:
            k = min(KNN_MAX_NEIGHBOURS, len(train_paths) - 1)
            detector = EmbeddingOD.for_audio(
                "balanced", encoder=encode, detector=KNN(n_neighbors=k), random_state=seed
            )
        detector.fit(train_paths)
        scores = detector.decision_function(test_paths)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != (len(test_paths),) or not np.all(np.isfinite(scores)):
        raise ValueError(f"{name}: expected {len(test_paths)} finite scores, got {scores!r}")
    return scores
