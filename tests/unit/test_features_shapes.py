"""Shapes and frame counts: defaults, the seed study settings, stacking, alignment, pooling."""

import numpy as np
import pytest
import torch

from aad.features import (
    CENSConfig,
    FeatureConfig,
    FeatureExtractor,
    MelConfig,
    STFTConfig,
    clip_embedding,
    seed_study_config,
    stack_frames,
)

SR = 16000
TEN_SECONDS = 10 * SR


def _noise(batch: int, samples: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return 0.1 * torch.randn(batch, samples, generator=generator)


def test_default_config_shapes() -> None:
    extractor = FeatureExtractor()
    features = extractor(_noise(2, TEN_SECONDS))
    assert features.shape == (2, 313, 64 + 20 + 12)
    assert features.dtype == torch.float32
    assert extractor.num_frames(TEN_SECONDS) == 313
    assert extractor.output_dim(TEN_SECONDS) == 96
    # one STFT shared by the three parts
    assert len(extractor.stfts) == 1


def test_seed_study_frame_counts_and_dims() -> None:
    extractor = FeatureExtractor(seed_study_config())
    parts = extractor.forward_parts(_noise(2, TEN_SECONDS))
    assert parts["mel"].shape == (2, 12, 64)  # speechpy LMFE 12 x 64
    assert parts["mfcc"].shape == (2, 134, 12)  # torchaudio MFCC 12 x 134
    assert parts["cens"].shape == (2, 63, 12)  # hop 512 -> 313 frames, every 5th -> 63
    assert extractor.part_frames(TEN_SECONDS) == {"mel": 12, "mfcc": 134, "cens": 63}
    assert clip_embedding(parts, stats=("mean",)).shape == (2, 88)  # the study's "means"
    assert extractor.embedding_dim(TEN_SECONDS, "pooled", ("mean",)) == 88
    flat = clip_embedding(parts, mode="flatten")
    assert flat.shape == (2, 12 * 64 + 134 * 12 + 63 * 12)
    assert extractor.embedding_dim(TEN_SECONDS, "flatten") == flat.shape[1]
    # forward aligns everything onto the first part's 12 frames
    assert extractor(_noise(1, TEN_SECONDS)).shape == (1, 12, 88)


def test_speechpy_framing_matches_numpy_reference() -> None:
    """Frame count floor((S - 16000) / 12000) and an FFT of the first 2048 samples."""
    extractor = FeatureExtractor(seed_study_config())
    wave = _noise(1, TEN_SECONDS, seed=3)
    ours = extractor.forward_parts(wave)["mel"][0].double().numpy()
    signal = wave[0].double().numpy()
    count = (TEN_SECONDS - 16000) // 12000
    frames = np.stack([signal[i * 12000 : i * 12000 + 2048] for i in range(count)])
    power = np.abs(np.fft.rfft(frames, n=2048, axis=-1)) ** 2
    fbank = extractor.mels["mel"].fbank.double().numpy()  # (64, 1025)
    reference = np.log(power @ fbank.T + 2.220446049250313e-16)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_branches_with_same_stft_share_it() -> None:
    cfg = FeatureConfig(
        features=["mel", "mfcc", "cens"],
        mel=MelConfig(stft=STFTConfig(n_fft=2048)),
    )
    extractor = FeatureExtractor(cfg)
    assert len(extractor.stfts) == 2


def test_alignment_maps_nearest_frame_in_time() -> None:
    cfg = FeatureConfig(features=["mel", "cens"], cens=CENSConfig(subsample=5))
    extractor = FeatureExtractor(cfg)
    wave = _noise(1, TEN_SECONDS)
    parts = extractor.forward_parts(wave)
    assert parts["mel"].shape[1] == 313 and parts["cens"].shape[1] == 63
    features = extractor(wave)
    assert features.shape == (1, 313, 64 + 12)
    expected = parts["cens"][:, np.clip(np.rint(np.arange(313) / 5).astype(int), 0, 62)]
    torch.testing.assert_close(features[..., 64:], expected)


def test_frame_stacking() -> None:
    x = torch.arange(2 * 6 * 3, dtype=torch.float32).reshape(2, 6, 3)
    stacked = stack_frames(x, 4)
    assert stacked.shape == (2, 3, 12)
    torch.testing.assert_close(stacked[:, 1], x[:, 1:5].reshape(2, 12))
    extractor = FeatureExtractor(FeatureConfig(stack_frames=5))
    assert extractor(_noise(1, TEN_SECONDS)).shape == (1, 309, 5 * 96)
    assert extractor.num_frames(TEN_SECONDS) == 309 and extractor.output_dim() == 480
    with pytest.raises(ValueError, match="stack"):
        stack_frames(x, 7)


def test_clip_embedding_stats() -> None:
    x = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(0))
    pooled = clip_embedding(x, stats=("mean", "std", "max", "min", "median"))
    assert pooled.shape == (3, 20)
    xn = x.numpy()
    expected = np.concatenate(
        [xn.mean(1), xn.std(1), xn.max(1), xn.min(1), np.median(xn, axis=1)], axis=1
    )
    np.testing.assert_allclose(pooled.numpy(), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(clip_embedding(x, mode="flatten"), x.reshape(3, 40))
    with pytest.raises(ValueError):
        clip_embedding(x, mode="sum")
    with pytest.raises(ValueError):
        clip_embedding(x, stats=("mode",))


def test_num_frames_matches_forward_for_odd_lengths() -> None:
    extractor = FeatureExtractor(seed_study_config())
    for samples in (28000, 33333, 48000, 100001):
        parts = extractor.forward_parts(_noise(1, samples))
        assert {k: v.shape[1] for k, v in parts.items()} == extractor.part_frames(samples)


@pytest.mark.parametrize("pad_mode", ["constant", "reflect"])
def test_num_frames_matches_forward_for_odd_n_fft(pad_mode: str) -> None:
    # a centred odd-length FFT pads n_fft // 2 per side: one sample short of n_fft in total
    stft = STFTConfig(n_fft=1023, hop_length=128, pad_mode=pad_mode)
    extractor = FeatureExtractor(FeatureConfig(features=["mel"], stft=stft))
    for samples in (16000, 16001, 16127, 16384):
        assert extractor(_noise(1, samples)).shape[1] == extractor.num_frames(samples)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    wave = _noise(4, TEN_SECONDS)
    for cfg in (FeatureConfig(features=["mel", "mfcc", "chroma", "cens"]), seed_study_config()):
        extractor = FeatureExtractor(cfg)
        cpu = extractor.forward_parts(wave)
        gpu = extractor.to("cuda").forward_parts(wave.to("cuda"))
        for name, part in cpu.items():
            assert gpu[name].device.type == "cuda"
            torch.testing.assert_close(gpu[name].cpu(), part, rtol=1e-3, atol=2e-3)


def test_autocast_does_not_change_features() -> None:
    extractor = FeatureExtractor()
    wave = _noise(2, 16000)
    plain = extractor(wave)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        cast = extractor(wave)
    assert cast.dtype == torch.float32
    torch.testing.assert_close(cast, plain)
