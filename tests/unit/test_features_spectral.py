"""Frame descriptors (rms, centroid, bandwidth, rolloff, flatness, contrast, zcr) vs librosa.

Tolerances, from librosa 0.11 computing on ``y`` (its own float32 STFT) against ours:

* ``rms`` (dB), ``centroid``, ``bandwidth``: ``rtol=1e-4`` (measured <= 5e-7 relative).
* ``flatness``: ``rtol=1e-5`` given the same magnitude ``S``; ``rtol=1e-3`` from ``y``. Its
  geometric mean runs over the smallest bins, whose float32 FFT round-off differs between
  torch and numpy's pocketfft by up to ~4e-4 relative in the flatness (measured).
* ``rolloff``: a bin frequency chosen by a float32 cumulative sum crossing a threshold;
  torch's and numpy's float32 cumsums can round a near-tie differently, so a frame may land
  one bin away. Asserted: never more than one bin off, and >= 98% of frames exact (measured
  one frame of 313 on a few clips, none on most).
* ``contrast``: given the same ``S`` equal to ``atol=1e-3`` dB (measured 6e-6). From ``y``
  the valley of the 0-200 Hz band is its single smallest magnitude bin (``quantile * 14``
  rounds to 1 bin at n_fft 1024), i.e. the bin most sensitive to FFT round-off: measured up
  to 0.1 dB there, 0 in the middle bands. Asserted from ``y``: max 0.5 dB, 99th percentile
  0.05 dB, Pearson r > 0.9999 (a wrong band edge, quantile or dB rule breaks all three).
* ``zcr``: exact (integer crossing counts over the same frames).
"""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import yaml

from aad.features import (
    ContrastConfig,
    FeatureConfig,
    FeatureExtractor,
    FlatnessConfig,
    RMSConfig,
    STFTConfig,
    ZCRConfig,
    clip_embedding,
)
from aad.features.spectral_config import SPECTRAL_NAMES

librosa = pytest.importorskip("librosa")

SR = 16000
DESCRIPTORS = ["rms", "centroid", "bandwidth", "rolloff", "flatness", "contrast", "zcr"]


def _synthetic(seconds: float = 3.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    tones = sum(0.2 / k * np.sin(2 * np.pi * 220.0 * k * t) for k in range(1, 6))
    chirp = 0.1 * np.sin(2 * np.pi * (100 * t + 600 * t**2))
    y = tones + chirp + 0.01 * rng.standard_normal(t.size)
    y[: SR // 2] = 0.0  # half a second of digital silence: the silent-frame rules
    return y.astype(np.float32)


def _real(root: Path, count: int) -> list[np.ndarray]:
    paths = sorted(root.rglob("*.wav"))
    clips = []
    for path in paths[:: max(len(paths) // count, 1)][:count]:
        data, rate = sf.read(path, dtype="float32", always_2d=True)
        assert rate == SR
        clips.append(np.ascontiguousarray(data.mean(axis=1)[: 10 * SR]))
    return clips


def _ours(cfg: FeatureConfig, y: np.ndarray) -> dict[str, np.ndarray]:
    parts = FeatureExtractor(cfg).forward_parts(torch.from_numpy(y))
    return {name: part[0].numpy().T for name, part in parts.items()}  # librosa's (D, T)


def _librosa(y: np.ndarray, n_fft: int, hop: int, pad_mode: str) -> dict[str, np.ndarray]:
    kw = dict(y=y, n_fft=n_fft, hop_length=hop, pad_mode=pad_mode)
    magnitude = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, pad_mode=pad_mode))
    rms = librosa.feature.rms(S=magnitude, frame_length=n_fft)
    return {
        "rms": librosa.amplitude_to_db(rms, ref=1.0, amin=1e-5, top_db=None),
        "centroid": librosa.feature.spectral_centroid(sr=SR, **kw),
        "bandwidth": librosa.feature.spectral_bandwidth(sr=SR, **kw),
        "rolloff": librosa.feature.spectral_rolloff(sr=SR, **kw),
        "flatness": librosa.feature.spectral_flatness(**kw),
        "contrast": librosa.feature.spectral_contrast(sr=SR, **kw),
        "zcr": librosa.feature.zero_crossing_rate(y, frame_length=n_fft, hop_length=hop),
    }


def _assert_rolloff_close(ours: np.ndarray, ref: np.ndarray, n_fft: int) -> None:
    bin_hz = SR / n_fft
    assert np.abs(ours - ref).max() <= bin_hz + 1e-3
    assert np.mean(ours == ref) >= 0.98


def _check(y: np.ndarray, n_fft: int, hop: int, pad_mode: str) -> None:
    stft = STFTConfig(n_fft=n_fft, hop_length=hop, pad_mode=pad_mode)
    ours = _ours(FeatureConfig(features=DESCRIPTORS, stft=stft), y)
    ref = _librosa(y, n_fft, hop, pad_mode)
    for name in ("rms", "centroid", "bandwidth"):
        np.testing.assert_allclose(ours[name], ref[name], rtol=1e-4, atol=1e-3, err_msg=name)
    np.testing.assert_allclose(ours["flatness"], ref["flatness"], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(ours["zcr"], ref["zcr"], rtol=0, atol=1e-7)
    _assert_rolloff_close(ours["rolloff"], ref["rolloff"], n_fft)
    error = np.abs(ours["contrast"] - ref["contrast"])
    assert error.max() < 0.5 and np.percentile(error, 99) < 0.05, error.max()
    assert np.corrcoef(ours["contrast"].ravel(), ref["contrast"].ravel())[0, 1] > 0.9999


@pytest.mark.parametrize(
    ("n_fft", "hop", "pad_mode"), [(1024, 512, "constant"), (2048, 256, "reflect")]
)
def test_descriptors_match_librosa_on_synthetic_sound(n_fft: int, hop: int, pad_mode: str):
    _check(_synthetic(), n_fft, hop, pad_mode)


@pytest.mark.real_data
@pytest.mark.parametrize(("n_fft", "hop"), [(1024, 512), (2048, 512)])
def test_descriptors_match_librosa_on_real_clips(dcase2020_mini, mimii_mini, n_fft, hop):
    for y in _real(dcase2020_mini, 4) + _real(mimii_mini, 2):
        _check(y, n_fft, hop, "constant")


@pytest.mark.real_data
def test_same_spectrum_gives_librosa_values(dcase2020_mini: Path) -> None:
    """librosa fed our magnitude: only the descriptor code differs, not the FFT."""
    for y in _real(dcase2020_mini, 3):
        extractor = FeatureExtractor(FeatureConfig(features=DESCRIPTORS))
        wave = torch.from_numpy(y)[None]
        magnitude = next(iter(extractor.stfts.values()))(wave).abs()[0].double().numpy()
        ours = {k: v[0].numpy().T for k, v in extractor.forward_parts(wave).items()}
        contrast = librosa.feature.spectral_contrast(S=magnitude, sr=SR, n_fft=1024)
        np.testing.assert_allclose(ours["contrast"], contrast, atol=1e-3)
        flatness = librosa.feature.spectral_flatness(S=magnitude)
        np.testing.assert_allclose(ours["flatness"], flatness, rtol=1e-5)
        rolloff = librosa.feature.spectral_rolloff(S=magnitude, sr=SR, n_fft=1024)
        _assert_rolloff_close(ours["rolloff"], rolloff, 1024)


@pytest.mark.parametrize("center", [True, False])
def test_zcr_frames_follow_the_stft(center: bool) -> None:
    y = _synthetic(seconds=2.0, seed=3)
    stft = STFTConfig(n_fft=512, hop_length=160, center=center)
    ours = _ours(FeatureConfig(features=["zcr"], stft=stft, zcr=ZCRConfig(threshold=0.01)), y)
    ref = librosa.feature.zero_crossing_rate(
        y, frame_length=512, hop_length=160, center=center, threshold=0.01
    )
    np.testing.assert_allclose(ours["zcr"], ref, atol=1e-7)


def test_silence_values_and_options() -> None:
    cfg = FeatureConfig(
        features=DESCRIPTORS,
        flatness=FlatnessConfig(log="db"),
        rms=RMSConfig(amin=1e-4),
        contrast=ContrastConfig(linear=True),
    )
    parts = FeatureExtractor(cfg).forward_parts(torch.zeros(2, SR))
    expected = {"rms": -80.0, "centroid": 0.0, "bandwidth": 0.0, "rolloff": 0.0,
                "flatness": 0.0, "contrast": 0.0, "zcr": 0.0}  # fmt: skip
    for name, value in expected.items():
        torch.testing.assert_close(parts[name], torch.full_like(parts[name], value), msg=name)
    y = _synthetic(seconds=2.0)
    plain = _ours(FeatureConfig(features=["flatness", "rms"], rms=RMSConfig(log="none")), y)
    db = _ours(FeatureConfig(features=["flatness"], flatness=FlatnessConfig(log="db")), y)
    np.testing.assert_allclose(db["flatness"], 10 * np.log10(plain["flatness"]), atol=1e-3)
    magnitude = np.abs(librosa.stft(y, n_fft=1024, hop_length=512))
    ref_rms = librosa.feature.rms(S=magnitude, frame_length=1024)
    np.testing.assert_allclose(plain["rms"], ref_rms, rtol=1e-4)


def test_shapes_alignment_and_embedding() -> None:
    cfg = FeatureConfig(
        features=["mel", *DESCRIPTORS],
        zcr=ZCRConfig(subsample=2, stft=STFTConfig(n_fft=2048, hop_length=256)),
    )
    extractor = FeatureExtractor(cfg)
    dims = extractor.part_dims()
    assert list(dims) == ["mel", *DESCRIPTORS]
    assert dims == {"mel": 64, **dict.fromkeys(DESCRIPTORS, 1), "contrast": 7}
    for samples in (SR, SR + 333, 10 * SR):
        wave = torch.from_numpy(_synthetic(seconds=samples / SR))[None]
        parts = extractor.forward_parts(wave)
        assert {k: v.shape[1] for k, v in parts.items()} == extractor.part_frames(samples)
        assert extractor(wave).shape == (1, extractor.num_frames(samples), 64 + 13)
    assert parts["zcr"].shape[1] == 313  # hop 256, every 2nd frame: the mel grid again
    torch.testing.assert_close(extractor(wave)[..., -1], parts["zcr"][..., 0])
    emb = clip_embedding(parts, stats=("mean", "std"))
    assert emb.shape == (1, extractor.embedding_dim(10 * SR))
    assert emb.shape[1] == 2 * (64 + 13)


def test_one_stft_feeds_every_part() -> None:
    extractor = FeatureExtractor(FeatureConfig(features=["mel", "mfcc", "cens", *DESCRIPTORS]))
    assert len(extractor.stfts) == 1
    calls = []
    stft = next(iter(extractor.stfts.values()))
    stft.register_forward_hook(lambda *args: calls.append(1))
    extractor(torch.from_numpy(_synthetic(seconds=2.0))[None].repeat(3, 1))
    assert len(calls) == 1


def test_config_round_trip_and_signatures() -> None:
    cfg = FeatureConfig(features=["mfcc", "contrast", "zcr"], contrast=ContrastConfig(n_bands=4))
    assert FeatureConfig.from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg
    # configs that leave the descriptor blocks at their defaults keep their old signatures
    assert FeatureConfig().signature() == "3a318bdc0761"
    assert FeatureConfig(features=["mel", "mfcc", "chroma", "cens"]).signature() == "271876b93fcd"
    changed = FeatureConfig(rms=RMSConfig(amin=1e-6))
    assert changed.signature() != FeatureConfig().signature()
    assert cfg.signature() != FeatureConfig(features=["mfcc", "contrast", "zcr"]).signature()


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"contrast": {"fmin": 1000.0}}, r"contrast band edge 32000 Hz .* reaches Nyquist"),
        ({"contrast": {"quantile": 0.0}}, r"contrast.quantile must be in \(0, 1\)"),
        ({"contrast": {"n_bands": 0}}, "contrast.n_bands must be >= 1"),
        ({"rolloff": {"roll_percent": 1.0}}, r"rolloff.roll_percent must be in \(0, 1\)"),
        ({"rms": {"log": "ln"}}, r"rms.log='ln' not in \('db', 'none'\)"),
        ({"flatness": {"amin": 0.0}}, "flatness.amin must be > 0"),
        ({"bandwidth": {"p": -1.0}}, "bandwidth.p must be > 0"),
        ({"zcr": {"threshold": -1.0}}, "zcr.threshold must be >= 0"),
        ({"centroid": {"subsample": 0}}, "centroid.subsample must be >= 1"),
        ({"contrast": {"n_band": 3}}, "unknown keys"),
        ({"features": ["mel", "spectral_flux"]}, "each must be one of"),
    ],
)
def test_invalid_values_raise_clearly(bad: dict, message: str) -> None:
    """Each part's settings are checked when the part is computed."""
    used = [name for name in bad if name in SPECTRAL_NAMES]
    with pytest.raises(ValueError, match=message):
        FeatureConfig.from_dict({"features": used, **bad} if used else bad)


def test_an_unused_part_does_not_limit_the_sample_rate() -> None:
    low = FeatureConfig.from_dict({"sample_rate": 8000, "features": ["mel"]})
    assert low.sample_rate == 8000  # contrast's default bands would reach 8 kHz's Nyquist
    with pytest.raises(ValueError, match="reaches Nyquist"):
        FeatureConfig.from_dict({"sample_rate": 8000, "features": ["contrast"]})


def test_contrast_band_without_bins_and_short_clips_raise() -> None:
    tiny_fft = FeatureConfig(features=["contrast"], stft=STFTConfig(n_fft=32, hop_length=16))
    with pytest.raises(ValueError, match=r"contrast band 0 \(0-200 Hz\) .* n_fft=32"):
        FeatureExtractor(tiny_fft)
    extractor = FeatureExtractor(
        FeatureConfig(features=["rms", "zcr"], zcr=ZCRConfig(stft=STFTConfig(n_fft=4096)))
    )
    with pytest.raises(ValueError, match=r"part 'zcr' needs \(2049 samples"):
        extractor(torch.zeros(1, 1000))
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        extractor(torch.tensor([[0.0] * 4096, [float("nan")] * 4096]))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    wave = torch.from_numpy(_synthetic(seconds=10.0))[None].repeat(4, 1)
    extractor = FeatureExtractor(FeatureConfig(features=DESCRIPTORS))
    cpu = extractor.forward_parts(wave)
    gpu = extractor.to("cuda").forward_parts(wave.to("cuda"))
    for name, part in cpu.items():
        if name == "rolloff":  # a parallel scan may flip a near-tie by one bin
            assert (gpu[name].cpu() - part).abs().max() <= SR / 1024 + 1e-3
            continue
        torch.testing.assert_close(gpu[name].cpu(), part, rtol=1e-3, atol=2e-3, msg=name)
