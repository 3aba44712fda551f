"""The Exploring-AAD presets produce the study's frame counts and dimensions (10 s, 16 kHz)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from aad.compare import STUDY_PROTOCOL_LABEL, load_config, make_groups
from aad.data.manifest import ClipRecord, Manifest
from aad.detectors import detector_from_spec
from aad.features import FeatureConfig, FeatureExtractor

EXPERIMENTS = Path(__file__).resolve().parents[2] / "configs" / "experiment"
TEN_SECONDS = 160_000


def preset(name: str = "exploring_aad") -> dict:
    return load_config(EXPERIMENTS / f"{name}.yaml")


@pytest.fixture(scope="module")
def extractor() -> FeatureExtractor:
    return FeatureExtractor(FeatureConfig.from_dict(preset()["features"]))


def test_lmfe_is_12_frames_of_64_natural_log_filters(extractor):
    config = extractor.config
    assert config.mel.log == "natural" and config.mel.n_mels == 64
    stft = config.branch_stft("mel")
    assert (stft.framing, stft.win_seconds, stft.hop_seconds, stft.n_fft) == (
        "speechpy",
        1.0,
        0.75,
        2048,
    )
    assert extractor.part_frames(TEN_SECONDS)["mel"] == 12
    assert extractor.part_dims()["mel"] == 64


def test_mfcc_is_134_frames_of_12_coefficients(extractor):
    mfcc = extractor.config.mfcc
    assert (mfcc.n_mfcc, mfcc.drop_first_coefficient, mfcc.n_mels, mfcc.mel_scale) == (
        13,
        True,
        64,
        "htk",
    )
    stft = extractor.config.branch_stft("mfcc")
    assert (stft.n_fft, stft.win_length, stft.hop_length) == (16000, 1600, 1200)
    assert extractor.part_frames(TEN_SECONDS)["mfcc"] == 134
    assert extractor.part_dims()["mfcc"] == 12


def test_cens_keeps_every_fifth_frame_of_hop_512(extractor):
    config = extractor.config
    assert config.branch_stft("cens").hop_length == 512
    assert (config.cens.win_len_smooth, config.cens.subsample) == (41, 5)
    assert extractor.part_frames(TEN_SECONDS)["cens"] == 63  # ceil(313 / 5)
    assert extractor.part_dims()["cens"] == 12


def test_means_are_88_dims_and_flatten_3132(extractor):
    means = preset()["embedding"]
    assert (means["mode"], means["stats"]) == ("pooled", ["mean"])
    assert extractor.embedding_dim(TEN_SECONDS, "pooled", means["stats"]) == 64 + 12 + 12
    flatten = preset("exploring_aad_flatten")["embedding"]
    assert flatten["mode"] == "flatten"
    assert extractor.embedding_dim(TEN_SECONDS, "flatten") == 12 * 64 + 134 * 12 + 63 * 12
    with torch.no_grad():
        parts = extractor.forward_parts(0.1 * torch.randn(1, TEN_SECONDS))
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "mel": (1, 12, 64),
        "mfcc": (1, 134, 12),
        "cens": (1, 63, 12),
    }


def test_methods_and_data_settings():
    config = preset()
    assert config["data"]["channel"] == "mean"
    assert config["data"]["protocol"] == "clean"
    assert config["data"]["clip_seconds"] == 10.0
    methods = {m["name"]: m for m in config["methods"]}
    assert list(methods) == ["isolation_forest", "lof", "ocsvm", "lstm_ae"]
    forest = detector_from_spec({"name": "isolation_forest", **methods["isolation_forest"]})
    assert forest.contamination == 1e-4 and forest.scale == "minmax"
    lof = detector_from_spec({"name": "lof", **methods["lof"]})
    assert (lof.n_neighbors, lof.contamination) == (20, 1e-4)
    assert methods["lstm_ae"]["model"]["class_path"] == "aad.models.LSTMAE"
    ae_features = FeatureExtractor(
        FeatureConfig.from_dict(methods["lstm_ae"]["model"]["init_args"]["features"])
    )
    assert ae_features.num_frames(TEN_SECONDS) == 313 and ae_features.output_dim() == 64


def test_study_protocol_variant_tests_on_training_normals():
    config = preset("exploring_aad_study")
    assert config["data"]["protocol"] == "study" and config["features"] == preset()["features"]
    clips = [
        ClipRecord(f"/x/{label}_{i}.wav", "mimii", "fan", "id_00", "test", label)
        for label in ("normal", "anomaly")
        for i in range(5)
    ]
    (group,) = make_groups(Manifest(clips), config["data"], seed=0)
    assert len(group.train) == 4 and all(r.label == "normal" for r in group.train)
    assert len(group.test) == 10 and set(group.train) <= set(group.test)
    assert group.notes == [STUDY_PROTOCOL_LABEL]
    clean = make_groups(Manifest(clips), preset()["data"], seed=0)
    assert clean[0].train == []  # no train split here: the clean protocol has nothing to fit


def test_train_fit_with_the_preset_runs_the_comparison():
    """`train.py fit --config configs/experiment/exploring_aad.yaml --data.root R` routes the
    preset (a methods list) to aad.compare with the other arguments; model configs do not."""
    from aad.cli import _method_comparison

    preset = "configs/experiment/exploring_aad.yaml"
    argv = ["fit", "--config", preset, "--data.root", "/data/mimii"]
    assert _method_comparison(argv) == (preset, ["--data.root", "/data/mimii"])
    assert _method_comparison(["fit", "--config", "configs/default.yaml"]) is None
