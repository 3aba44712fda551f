"""Bad input: short clips, silence, NaN/Inf, wrong rank, wrong dtype."""

import numpy as np
import pytest
import torch

from aad.features import FeatureConfig, FeatureExtractor, STFTConfig, seed_study_config


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(FeatureConfig(features=["mel", "mfcc", "chroma", "cens"]))


def test_too_short_clip_names_lengths(extractor: FeatureExtractor) -> None:
    with pytest.raises(ValueError, match=r"clip of 300 samples .* needs \(513 samples"):
        extractor(torch.zeros(2, 300))
    assert extractor.min_samples() == 513  # center=True: n_fft // 2 + 1
    assert extractor(torch.zeros(1, 513)).shape == (1, 2, 108)


def test_too_short_without_centering_and_for_speechpy() -> None:
    uncentred = FeatureExtractor(FeatureConfig(stft=STFTConfig(center=False)))
    with pytest.raises(ValueError, match="1000 samples"):
        uncentred(torch.zeros(1, 1000))
    assert uncentred(torch.zeros(1, 1024)).shape[1] == 1
    with pytest.raises(ValueError, match="28000 samples"):
        FeatureExtractor(seed_study_config())(torch.zeros(1, 20000))


def test_too_few_frames_to_stack() -> None:
    extractor = FeatureExtractor(FeatureConfig(stack_frames=5))
    with pytest.raises(ValueError, match="stack_frames=5"):
        extractor(torch.zeros(1, 1024))
    shortest = extractor.min_samples()
    assert shortest == 4 * 512  # centred: 1 + S // 512 >= 5
    assert extractor(torch.zeros(1, shortest)).shape[1] == 1
    with pytest.raises(ValueError):
        extractor(torch.zeros(1, shortest - 1))


@pytest.mark.parametrize("config", [FeatureConfig(), seed_study_config()])
def test_silence_gives_finite_features(config: FeatureConfig) -> None:
    extractor = FeatureExtractor(config)
    parts = extractor.forward_parts(torch.zeros(2, 160000))
    for name, part in parts.items():
        assert torch.isfinite(part).all(), name
    assert torch.isfinite(extractor(torch.zeros(1, 160000))).all()
    # silent CENS frames stay zero (librosa leaves near-zero frames unnormalised)
    assert parts["cens"].abs().max() == 0


def test_nan_and_inf_rows_are_named(extractor: FeatureExtractor) -> None:
    wave = torch.zeros(4, 4000)
    wave[1, 10] = float("nan")
    wave[3, 0] = float("inf")
    with pytest.raises(ValueError, match=r"rows \[1, 3\]"):
        extractor(wave)
    names = ["a.wav", "b.wav", "c.wav", "d.wav"]
    with pytest.raises(ValueError, match=r"clips: b.wav, d.wav"):
        extractor(wave, clip_names=names)


def test_rank(extractor: FeatureExtractor) -> None:
    single = extractor(torch.zeros(4000))
    assert single.shape == (1, extractor.num_frames(4000), extractor.output_dim())
    with pytest.raises(ValueError, match="shape"):
        extractor(torch.zeros(2, 1, 4000))
    with pytest.raises(ValueError, match="shape"):
        extractor(torch.tensor(0.0))
    with pytest.raises(ValueError, match="empty"):
        extractor(torch.zeros(0, 4000))


def test_dtypes(extractor: FeatureExtractor) -> None:
    rng = np.random.default_rng(0)
    pcm = rng.integers(-20000, 20000, size=(2, 8000), dtype=np.int16)
    from_int = extractor(torch.from_numpy(pcm))
    from_float = extractor(torch.from_numpy(pcm.astype(np.float32) / 32768.0))
    torch.testing.assert_close(from_int, from_float)
    from_double = extractor(torch.from_numpy(pcm.astype(np.float64) / 32768.0))
    assert from_double.dtype == torch.float32
    torch.testing.assert_close(from_double, from_float)
    torch.testing.assert_close(extractor(pcm.astype(np.float32) / 32768.0), from_float)
    for dtype in (torch.int32, torch.uint8, torch.bool, torch.complex64):
        with pytest.raises(TypeError, match="int16"):
            extractor(torch.zeros(1, 8000, dtype=dtype))
