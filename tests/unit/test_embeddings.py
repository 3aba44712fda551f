"""Pooled clip embeddings: parity with the feature front-end, batching, cache, latent source."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import aad.embeddings as embeddings
from aad.data.audio import load_waveform
from aad.data.manifest import ClipRecord
from aad.embeddings import (
    DEFAULT_FEATURES,
    EmbeddingConfig,
    compute_embeddings,
    embedding_signature,
)
from aad.features import FeatureConfig, FeatureExtractor, clip_embedding

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[ClipRecord]:
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    clips = []
    for index in range(3):
        path = folder / f"clip_{index}.wav"
        tone = np.sin(2 * np.pi * (300 + 200 * index) * np.arange(16000) / 16000)
        sf.write(path, (0.1 * tone + 0.01 * rng.normal(size=16000)).astype(np.float32), 16000)
        clips.append(ClipRecord(str(path), "test", "fan", "id_00", "train", "normal"))
    return clips


def direct(records: list[ClipRecord], config: FeatureConfig, stats=("mean", "std")) -> np.ndarray:
    waveform = torch.stack([load_waveform(r.path) for r in records])
    with torch.no_grad():
        return clip_embedding(FeatureExtractor(config).forward_parts(waveform), stats=stats).numpy()


def test_pooled_embeddings_match_the_feature_front_end(records):
    config = FeatureConfig()
    result = compute_embeddings(records, config, batch_size=2, device="cpu", cache_dir=None)
    assert result.shape == (3, 2 * (64 + 20 + 12)) and result.dtype == np.float32
    np.testing.assert_allclose(result, direct(records, config), rtol=1e-5, atol=1e-5)
    one_by_one = compute_embeddings(
        records, config, stats=("mean", "std"), batch_size=1, device="cpu", cache_dir=None
    )
    np.testing.assert_allclose(one_by_one, result, rtol=1e-5, atol=1e-5)


def test_cache_is_memory_mapped_and_keyed_by_params_and_mtime(records, tmp_path, monkeypatch):
    config = {"features": ["mel"]}
    first = compute_embeddings(records, config, stats=("mean",), device="cpu", cache_dir=tmp_path)
    assert first.shape == (3, 64)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 1

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed although cached")

    with monkeypatch.context() as patch:
        patch.setattr(embeddings, "_compute", refuse)
        cached = compute_embeddings(
            records, config, stats=("mean",), device="cpu", cache_dir=tmp_path
        )
    assert isinstance(cached, np.memmap)
    np.testing.assert_array_equal(cached, first)
    # other statistics -> another entry
    both = compute_embeddings(
        records, config, stats=("mean", "max"), device="cpu", cache_dir=tmp_path
    )
    assert both.shape == (3, 128)
    # a clip rewritten (new mtime) -> recomputed
    stat = os.stat(records[0].path)
    os.utime(records[0].path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    compute_embeddings(records, config, stats=("mean",), device="cpu", cache_dir=tmp_path)
    assert len(list((tmp_path / "embeddings").glob("*.npy"))) == 3


def test_latent_source_is_the_module_encoding(records):
    from aad.models import LSTMAE

    torch.manual_seed(0)
    module = LSTMAE(score="mean", window=8, latent_size=6, normalize=False).eval()
    result = compute_embeddings(
        records, source="latent", module=module, batch_size=2, device="cpu", cache_dir=None
    )
    waveform = torch.stack([load_waveform(r.path) for r in records])
    with torch.no_grad():
        expected = module.encode(module.prepare_features(waveform)).numpy()
    assert result.shape == (3, 6)
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)


def test_signatures_and_errors(records):
    base = embedding_signature(FeatureConfig())
    assert base.startswith(FeatureConfig().signature())
    assert embedding_signature(FeatureConfig(), stats=("mean",)) != base
    assert embedding_signature({"features": ["mel"]}) != base
    with pytest.raises(ValueError, match="got no clips"):
        compute_embeddings([], cache_dir=None)
    with pytest.raises(ValueError, match="source='latent' needs a trained module"):
        compute_embeddings(records, source="latent", cache_dir=None)
    with pytest.raises(ValueError, match="embedding source must be one of"):
        compute_embeddings(records, source="pixels", cache_dir=None)


def test_records_of_other_lengths_are_padded_to_the_first(records, tmp_path: Path):
    short = tmp_path / "short.wav"
    sf.write(short, np.full(8000, 0.05, dtype=np.float32), 16000)
    mixed = [*records[:1], ClipRecord(str(short), "test", "fan", "id_00", "test", "normal")]
    result = compute_embeddings(mixed, {"features": ["mel"]}, device="cpu", cache_dir=None)
    assert result.shape == (2, 128) and np.all(np.isfinite(result))


def test_latent_cache_is_keyed_by_the_module_hyperparameters(records, tmp_path):
    """Two LSTM-AEs with the same weights but other windows encode differently: the second
    must not be served the first one's cached latent embeddings."""
    from aad.models import LSTMAE

    modules = []
    for window in (4, 16):
        torch.manual_seed(0)
        modules.append(LSTMAE(score="mean", window=window, latent_size=6, normalize=False).eval())
    torch.testing.assert_close(modules[0].state_dict(), modules[1].state_dict(),
                               rtol=0, atol=0, equal_nan=True)  # fmt: skip
    results = [
        compute_embeddings(records, source="latent", module=m, device="cpu", cache_dir=tmp_path)
        for m in modules
    ]
    waveform = torch.stack([load_waveform(r.path) for r in records])
    with torch.no_grad():
        expected = modules[1].encode(modules[1].prepare_features(waveform)).numpy()
    np.testing.assert_allclose(results[1], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(results[0], results[1])


def test_a_corrupt_cache_entry_is_named_deleted_and_recomputed(records, tmp_path):
    config = {"features": ["mel"]}
    first = np.array(compute_embeddings(records, config, device="cpu", cache_dir=tmp_path))
    (entry,) = (tmp_path / "embeddings").glob("*.npy")
    entry.write_bytes(b"\x93NUMPY garbage")
    with pytest.warns(UserWarning, match=f"corrupt embedding cache entry {entry} .*recomputing"):
        again = compute_embeddings(records, config, device="cpu", cache_dir=tmp_path)
    np.testing.assert_array_equal(again, first)
    assert np.array_equal(np.load(entry), first)  # rewritten whole
    np.save(entry, np.full_like(first, np.nan))  # readable, but not embeddings
    with pytest.warns(UserWarning, match="non-finite values"):
        np.testing.assert_array_equal(
            compute_embeddings(records, config, device="cpu", cache_dir=tmp_path), first
        )


def test_embedding_config_is_the_one_home_of_the_defaults():
    config = EmbeddingConfig()
    assert config.features == DEFAULT_FEATURES and config.features is not DEFAULT_FEATURES
    assert (config.mode, config.stats, config.batch_size, config.cache_dir) == (
        "pooled", ["mean", "std"], 32, ".cache/aad")  # fmt: skip
    assert EmbeddingConfig(mode="flatten", stats=[]).mode == "flatten"  # flatten needs no stats
    for kwargs, message in (
        ({"mode": "stacked"}, "embedding.mode must be one of"),
        ({"stats": []}, "embedding.stats must be a non-empty list"),
        ({"stats": ["mean", "mode"]}, "embedding.stats must be a non-empty list"),
        ({"batch_size": 0}, "embedding.batch_size must be >= 1"),
        ({"features": {"features": ["pitch"]}}, "each must be one of"),
    ):
        with pytest.raises(ValueError, match=message):
            EmbeddingConfig(**kwargs)
