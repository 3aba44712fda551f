"""FeatureConfig: round trips (dict, YAML, jsonargparse), validation and signatures."""

from dataclasses import asdict

import pytest
import yaml

from aad.features import (
    FeatureConfig,
    FeatureExtractor,
    MelConfig,
    STFTConfig,
    seed_study_config,
)


@pytest.mark.parametrize("cfg", [FeatureConfig(), seed_study_config()])
def test_dict_and_yaml_round_trip(cfg: FeatureConfig) -> None:
    assert FeatureConfig.from_dict(asdict(cfg)) == cfg
    assert FeatureConfig.from_dict(yaml.safe_load(yaml.safe_dump(asdict(cfg)))) == cfg


def test_partial_dict_fills_defaults_and_unknown_keys_raise() -> None:
    cfg = FeatureConfig.from_dict({"mel": {"n_mels": 32, "stft": {"n_fft": 2048}}})
    assert cfg.mel.n_mels == 32 and cfg.mel.stft == STFTConfig(n_fft=2048)
    assert cfg.mfcc == FeatureConfig().mfcc
    with pytest.raises(ValueError, match="unknown keys"):
        FeatureConfig.from_dict({"mel": {"n_mel": 32}})


def test_jsonargparse_builds_nested_dataclasses() -> None:
    jsonargparse = pytest.importorskip("jsonargparse")
    parser = jsonargparse.ArgumentParser()
    parser.add_argument("--features", type=FeatureConfig)
    text = yaml.safe_dump({"features": {"features": ["mel", "cens"], "cens": {"subsample": 5}}})
    cfg = parser.instantiate(parser.parse_string(text)).features
    assert isinstance(cfg, FeatureConfig)
    assert cfg.features == ["mel", "cens"] and cfg.cens.subsample == 5


@pytest.mark.parametrize(
    "bad",
    [
        {"features": ["mel", "spectral_flux"]},
        {"features": []},
        {"mel": {"log": "log2"}},
        {"mfcc": {"n_mfcc": 80}},
        {"stft": {"window": "kaiser"}},
        {"stack_frames": 0},
    ],
)
def test_invalid_values_raise(bad: dict) -> None:
    with pytest.raises(ValueError):
        FeatureConfig.from_dict(bad)


def test_win_longer_than_fft_needs_speechpy_framing() -> None:
    with pytest.raises(ValueError, match="speechpy"):
        FeatureExtractor(FeatureConfig(stft=STFTConfig(n_fft=512, win_length=1024)))


def test_signature_is_stable_and_sensitive() -> None:
    base = FeatureConfig()
    assert base.signature() == FeatureConfig().signature()
    assert len(base.signature()) == 12
    assert FeatureExtractor(base).signature() == base.signature()
    changed = [
        FeatureConfig(sample_rate=22050),
        FeatureConfig(mel=MelConfig(n_mels=65)),
        FeatureConfig(stft=STFTConfig(hop_length=256)),
        FeatureConfig(features=["mel", "mfcc"]),
        FeatureConfig(stack_frames=5),
    ]
    signatures = {cfg.signature() for cfg in changed} | {base.signature()}
    assert len(signatures) == len(changed) + 1
