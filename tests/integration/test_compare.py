"""End to end: every method on the synthetic set -> table + figures; same seed, same table.

The set is a little larger than the shared ``synthetic_root`` (30 training clips per id
instead of 12): with 24 training clips per type, IsolationForest on valve sits near 0.75
AUC depending on its seed, too close to the bar to be a stable test.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from aad.compare import main, normalise_overrides, parse_args

METHODS = [
    {"name": "isolation_forest", "params": {"n_estimators": 100}},
    {"name": "ocsvm", "params": {"nu": 0.1}},
    {"name": "lof", "params": {"n_neighbors": 5}},
    {"name": "knn", "params": {"n_neighbors": 3}},
    {"name": "mahalanobis", "class_path": "aad.detectors.MahalanobisDetector"},
    {"name": "gmm", "params": {"n_components": 1}},
    {
        "name": "dcase_ae",
        "model": {"class_path": "aad.models.DCASEAE", "init_args": {"normalize": True}},
        "trainer": {"max_epochs": 5},
        "batch_size": 8,
    },
    {
        "name": "lstm_ae",
        "model": {"class_path": "aad.models.LSTMAE", "init_args": {"window": 16}},
        "trainer": {"max_epochs": 3},
        "batch_size": 8,
    },
    {
        "name": "knn_lstm_latent",
        "detector": "knn",
        "params": {"n_neighbors": 3},
        "embedding": "latent",
        "latent_model": "lstm_ae",
    },
]


def write_config(folder: Path, root: Path, cache: Path) -> Path:
    config = {
        "seed": 0,
        "out": str(folder / "out"),
        "progress": False,
        "data": {"root": str(root)},
        "embedding": {"cache_dir": str(cache), "device": "cpu"},
        "methods": METHODS,
    }
    path = folder / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def compare_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aad.data.synthetic import generate_dataset

    return generate_dataset(
        tmp_path_factory.mktemp("compare_data"),
        machine_types=("fan", "valve"),
        machine_ids=("id_00", "id_02"),
        n_train=30,
        n_test_normal=8,
        n_test_anomaly=8,
        duration_s=2.0,
        seed=0,
    )


@pytest.fixture(scope="module")
def first_run(compare_root: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("compare")
    cache = tmp_path_factory.mktemp("cache")
    config = write_config(folder, compare_root, cache)
    return config, main(str(config)), cache


def test_every_method_beats_chance_and_outputs_exist(first_run):
    config, table, _ = first_run
    out = Path(yaml.safe_load(config.read_text())["out"])
    means = table[(table["machine_id"] == "mean") & (table["machine_type"] != "ALL")]
    assert set(means["method"]) == {m["name"] for m in METHODS}
    assert set(means["machine_type"]) == {"fan", "valve"}
    failing = means[means["auc"] < 0.75][["method", "machine_type", "auc"]]
    assert failing.empty, f"methods at or near chance:\n{failing}"
    for name in ("metrics.csv", "metrics.md", "scores.csv", "runs.csv", "config.yaml"):
        assert (out / name).stat().st_size > 0, name
    for name in ("roc_fan.png", "roc_valve.png", "auc_bars.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    written = pd.read_csv(out / "metrics.csv")
    assert {"method", "machine_type", "machine_id", "auc", "pauc", "ap"} <= set(written.columns)
    assert {"id_00", "id_02", "mean", "hmean"} <= set(written["machine_id"])
    assert "| knn_lstm_latent |" in (out / "metrics.md").read_text()
    scores = pd.read_csv(out / "scores.csv")
    assert len(scores) == len(METHODS) * 2 * 2 * 16  # methods x types x ids x test clips


def test_same_seed_gives_the_same_table(first_run, tmp_path: Path):
    """A second run (valve only, to keep CI short) reproduces the first run's valve rows."""
    config, first_table, cache = first_run
    settings = yaml.safe_load(config.read_text())
    second = write_config(tmp_path, Path(settings["data"]["root"]), cache)
    second_table = main(str(second), ["data.machine_types=[valve]"])
    valve = first_table[first_table["machine_type"] == "valve"].reset_index(drop=True)
    pd.testing.assert_frame_equal(second_table, valve, check_exact=True)
    first_scores = pd.read_csv(Path(settings["out"]) / "scores.csv")
    second_scores = pd.read_csv(tmp_path / "out" / "scores.csv")
    first_valve = first_scores[first_scores["machine_type"] == "valve"].reset_index(drop=True)
    pd.testing.assert_frame_equal(second_scores, first_valve, check_exact=True)


def test_cli_overrides_are_parsed():
    config, overrides = parse_args(
        ["--config", "c.yaml", "--data.root", "/d", "--out", "o", "--data.per_id=true"]
    )
    assert config == "c.yaml"
    assert overrides == ["out=o", "data.root=/d", "data.per_id=true"]
    assert normalise_overrides(["--seed", "3", "--data.root=/x", "out=y"]) == [
        "seed=3",
        "data.root=/x",
        "out=y",
    ]
    with pytest.raises(ValueError, match="--seed needs a value"):
        normalise_overrides(["--seed"])


def test_missing_training_clips_is_explained(tmp_path: Path, dcase2020_mini: Path):
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"data": {"root": str(dcase2020_mini)}, "methods": [{"name": "knn"}]})
    )
    with pytest.raises(ValueError, match="no normal training clips .*data.protocol=study"):
        main(str(config), [f"out={tmp_path / 'out'}"])


def test_shipped_config_resolves_presets_and_builds_every_method(tmp_path: Path):
    from aad.compare import build_module, detector_spec, load_config, method_kind
    from aad.detectors import detector_from_spec

    config = load_config("configs/compare.yaml", ["data.root=/nowhere"])
    names = [m["name"] for m in config["methods"]]
    assert names[:6] == ["isolation_forest", "ocsvm", "lof", "knn", "mahalanobis", "gmm"]
    lof = config["methods"][2]
    assert lof["detector"] == "lof" and lof["params"]["n_neighbors"] == 10
    assert lof["params"]["contamination"] == 0.1  # from configs/detectors/lof.yaml
    for spec in config["methods"]:
        if method_kind(spec) == "model":
            assert hasattr(build_module(spec, None), "encode")
        else:
            detector = detector_from_spec(detector_spec(spec, seed=3))
            assert detector.random_state == 3


def test_unreadable_clips_are_skipped_as_train_py_skips_them(synthetic_root: Path, tmp_path: Path):
    """compare reads the clips train.py would: a corrupt clip is dropped with one warning
    (``data.strict: true`` raises), instead of crashing the run when its embedding is made."""
    import shutil

    from aad.compare import read_records
    from aad.data.audio import AudioDecodeError

    root = tmp_path / "data"
    shutil.copytree(synthetic_root / "fan", root / "fan")
    corrupt = root / "fan" / "train" / "normal_id_00_99999999.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    data = {"root": str(root), "layout": "auto", "machine_types": None, "machine_ids": None,
            "channel": 0}  # fmt: skip
    with pytest.warns(UserWarning, match="skipping 1 unreadable clip"):
        manifest = read_records(data, seed=0)
    assert str(corrupt) not in {r.path for r in manifest}
    assert len(manifest) == len(list((root / "fan").rglob("*.wav"))) - 1
    with pytest.raises(AudioDecodeError, match="unreadable"):
        read_records({**data, "strict": True}, seed=0)


def test_clip_length_follows_the_rate_of_the_features_used(tmp_path: Path):
    """data.clip_seconds is seconds: a method whose features run at 8 kHz gets 0.5 s of audio
    (4000 samples), not the 8000 samples 0.5 s is at the global 16 kHz (1 s of audio, half
    of it zero padding)."""
    import numpy as np
    import soundfile as sf

    from aad.compare import embed
    from aad.data.manifest import ClipRecord
    from aad.embeddings import compute_embeddings

    rng = np.random.default_rng(0)
    records = []
    for index in range(2):
        path = tmp_path / f"clip_{index}.wav"
        sf.write(path, (0.1 * rng.normal(size=16000)).astype(np.float32), 16000)
        records.append(ClipRecord(str(path), "test", "fan", "id_00", "train", "normal"))
    config = {
        "data": {"clip_seconds": 0.5, "channel": 0},
        "features": {"sample_rate": 16000, "features": ["mel"]},
        "embedding": {"mode": "pooled", "stats": ["mean", "std"], "batch_size": 2,
                      "device": "cpu", "cache_dir": None, "num_workers": 0},  # fmt: skip
        "progress": False,
    }
    spec = {"name": "knn_8k", "features": {"sample_rate": 8000}}
    result = embed(records, config, spec, records)
    features = {"sample_rate": 8000, "features": ["mel"]}
    expected = compute_embeddings(records, features, device="cpu", cache_dir=None,
                                  num_samples=4000, progress=False)  # fmt: skip
    np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-6)
