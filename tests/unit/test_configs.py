"""Every YAML under configs/ is parsed and instantiated by the command that reads it.

train.py's configs through ``AADCLI`` (LightningCLI), compare and experiment configs through
``compare_parser``, detector presets through ``detector_from_spec``; the Exploring-AAD presets
also give the study's frame counts and dimensions (10 s at 16 kHz). Instantiating never reads
``data.root``: the roots below do not exist.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

from aad.cli.compare import compare_parser
from aad.cli.train import AADCLI
from aad.data.datamodule import MachineSoundDataModule
from aad.data.manifest import ClipRecord, Manifest
from aad.data.splits import STUDY_PROTOCOL_LABEL, make_groups
from aad.detectors import BaseDetector, detector_from_spec
from aad.embeddings import EmbeddingConfig
from aad.engine.methods import DetectorMethod, MethodSpec, ModelMethod, build_methods
from aad.features import FeatureConfig, FeatureExtractor

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
EXPERIMENTS = CONFIGS / "experiment"
STUDY = EXPERIMENTS / "exploring_aad"
TEN_SECONDS = 160_000
ABSENT = "/nonexistent/aad-root"


def _yamls(folder: str) -> list[Path]:
    return sorted((CONFIGS / folder).glob("*.yaml"))


pytestmark = [  # LightningCLI's own notes: args given beside pytest's argv; jsonargparse API
    pytest.mark.filterwarnings("ignore:LightningCLI's args parameter"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:lightning.pytorch.cli"),
]
VARIANTS = [p for p in _yamls("experiment") if p.name != "exploring_aad.yaml"]
GPU_TRAINERS = {"gpu.yaml", "ddp.yaml"}


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    """default.yaml sets torch_threads: 1 process-wide; give the other tests theirs back."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


class _ParseOnly(AADCLI):
    """train.py's parser and checks, without building the classes."""

    def instantiate_classes(self) -> None:
        pass


def _train_cli(*args: str) -> AADCLI:
    return AADCLI(args=["--data.root", ABSENT, *args])


def test_every_yaml_is_exercised_here() -> None:
    tested = {CONFIGS / n for n in ("default.yaml", "compare.yaml", "callbacks/default.yaml")}
    for folder in ("model", "data", "trainer", "detectors", "experiment", STUDY.name):
        tested.update(_yamls(f"experiment/{folder}" if folder == STUDY.name else folder))
    assert set(CONFIGS.rglob("*.yaml")) == tested


def test_default_config_builds_the_main_job(tmp_path: Path) -> None:
    root = tmp_path / "synthetic_not_written"
    cli = AADCLI(args=["--data.root", str(root)])
    assert type(cli.model).__name__ == "LSTMAE" and cli.model.feature_config.features == ["mel"]
    assert (cli.model.feature_config.mel.n_mels, cli.model.score_name) == (128, "mahalanobis")
    assert isinstance(cli.datamodule, MachineSoundDataModule) and cli.datamodule.root == str(root)
    assert not root.exists()  # instantiating reads and writes nothing under the root
    assert cli.config.seed_everything == 0 and torch.get_num_threads() == 1
    assert (cli.config.evaluate, cli.config.ckpt_path) == (True, None)
    trainer = cli.trainer
    assert (trainer.max_epochs, trainer.log_every_n_steps, trainer.num_sanity_val_steps) == (
        100, 5, 0)  # fmt: skip
    checkpoints = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    stopping = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert len(checkpoints) == len(stopping) == 1  # configs/callbacks/default.yaml
    assert (checkpoints[0].monitor, checkpoints[0].save_last) == ("val/loss", True)
    assert checkpoints[0].filename == "best-epoch{epoch:02d}"
    assert (stopping[0].monitor, stopping[0].patience) == ("val/loss", 5)


def test_data_sample_rate_follows_the_model() -> None:
    cli = _train_cli("--model.init_args.features", '{"sample_rate": 22050, "features": ["mel"]}')
    assert cli.model.sample_rate == cli.datamodule.sample_rate == 22050


@pytest.mark.parametrize("path", _yamls("model"), ids=lambda p: p.name)
def test_model_configs(path: Path) -> None:
    class_path = yaml.safe_load(path.read_text())["class_path"]
    model = _train_cli("--model", str(path)).model
    assert f"{type(model).__module__.rsplit('.', 2)[0]}.{type(model).__name__}" == class_path
    if class_path == "aad.models.DCASEAE":  # its own defaults, not the LSTM-AE's it replaces
        own = inspect.signature(type(model).__init__).parameters
        sizes = (model.hparams.hidden_size, model.hparams.latent_size)
        assert model.input_dim == 640 and sizes == (128, 8)  # the baseline's, not the LSTM's
        assert (model.score_name, model.top_k, model.learning_rate) == (
            own["score"].default, own["top_k"].default, own["learning_rate"].default)  # fmt: skip


@pytest.mark.parametrize("path", _yamls("data"), ids=lambda p: p.name)
def test_data_configs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("instantiating the DataModule read or wrote its root")

    monkeypatch.setattr("aad.data.datamodule.read_manifest", refuse)
    monkeypatch.setattr("aad.data.synthetic.generate_if_missing", refuse)
    values = yaml.safe_load(path.read_text())
    data = AADCLI(args=["--data", str(path)]).datamodule
    for key, value in values.items():
        assert data.hparams[key] == value, key


@pytest.mark.parametrize("path", _yamls("trainer"), ids=lambda p: p.name)
def test_trainer_configs(path: Path) -> None:
    values = yaml.safe_load(path.read_text())
    parsed = _ParseOnly(args=["--data.root", ABSENT, "--trainer", str(path)]).config.trainer
    for key, value in values.items():
        if key != "callbacks":
            assert parsed[key] == value, key
    if path.name in GPU_TRAINERS and not torch.cuda.is_available():
        return  # parsed and checked; building a GPU trainer needs a GPU
    trainer = _train_cli("--trainer", str(path)).trainer
    assert trainer.max_epochs == values.get("max_epochs", 100)
    if "precision" in values:
        assert trainer.precision == values["precision"]


def test_compare_config_builds_every_method() -> None:
    parser = compare_parser()
    config = parser.parse_args(["--data.root", ABSENT])  # configs/compare.yaml by default
    init = parser.instantiate(config)
    assert (init.out, init.data.root, init.data.hparams.protocol) == (
        "results/compare", ABSENT, "clean")  # fmt: skip
    assert init.trainer.max_epochs == 100 and len(init.trainer.callbacks) == 2
    assert isinstance(init.embedding, EmbeddingConfig) and init.embedding.mode == "pooled"
    specs = {spec.name: spec for spec in init.methods}
    assert list(specs) == ["mahalanobis", "isolation_forest", "ocsvm", "lof", "knn", "gmm",
                           "dcase_ae", "lstm_ae", "knn_lstm_latent", "classifier"]  # fmt: skip
    assert all(isinstance(spec, MethodSpec) for spec in init.methods)
    assert type(specs["dcase_ae"].model).__name__ == "DCASEAE"
    assert specs["lstm_ae"].trainer == {}  # configs/trainer/default.yaml, as train.py
    methods = {m.name: m for m in build_methods(init.methods, init.embedding, lambda spec: None)}
    latent, lstm = methods["knn_lstm_latent"], methods["lstm_ae"]
    assert isinstance(latent, DetectorMethod) and latent.latent is lstm
    assert isinstance(lstm, ModelMethod) and lstm.module is specs["lstm_ae"].model


@pytest.mark.parametrize("variant", [None, *VARIANTS], ids=lambda p: p.name if p else "base")
def test_experiment_configs(variant: Path | None) -> None:
    parser = compare_parser()
    args = ["--config", str(EXPERIMENTS / "exploring_aad.yaml")]
    args += ["--config", str(variant)] if variant else []
    init = parser.instantiate(parser.parse_args([*args, "--data.root", ABSENT]))
    assert [spec.name for spec in init.methods] == ["isolation_forest", "lof", "ocsvm", "lstm_ae"]
    assert init.data.channel == "mean" and init.embedding.stats == ["mean"]
    name = variant.stem if variant else "exploring_aad"
    assert init.out == f"results/{name}"
    assert init.data.hparams.protocol == ("study" if name.endswith("study") else "clean")
    assert init.embedding.mode == ("flatten" if name.endswith("flatten") else "pooled")


def _study_parts(*extra: str):
    """The Exploring-AAD preset through compare's parser (variants as a second ``--config``),
    plus ``extra`` arguments."""
    parser = compare_parser()
    config = parser.parse_args(["--config", str(EXPERIMENTS / "exploring_aad.yaml"),
                                "--data.root", ABSENT, *extra])  # fmt: skip
    return parser.instantiate(config)


@pytest.fixture(scope="module")
def study():
    return _study_parts()


@pytest.fixture(scope="module")
def extractor(study) -> FeatureExtractor:
    return FeatureExtractor(FeatureConfig.from_dict(study.embedding.features))


def test_lmfe_is_12_frames_of_64_natural_log_filters(extractor):
    config = extractor.config
    assert config.mel.log == "natural" and config.mel.n_mels == 64
    stft = config.branch_stft("mel")
    assert (stft.framing, stft.win_seconds, stft.hop_seconds, stft.n_fft) == (
        "speechpy", 1.0, 0.75, 2048)  # fmt: skip
    assert extractor.part_frames(TEN_SECONDS)["mel"] == 12 and extractor.part_dims()["mel"] == 64


def test_mfcc_is_134_frames_of_12_coefficients_without_c0(extractor):
    mfcc = extractor.config.mfcc
    assert (mfcc.n_mfcc, mfcc.drop_first_coefficient, mfcc.n_mels, mfcc.mel_scale) == (
        13, True, 64, "htk")  # fmt: skip
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


def test_means_are_88_dims_and_flatten_3132(study, extractor):
    assert (study.embedding.mode, study.embedding.stats) == ("pooled", ["mean"])
    assert extractor.embedding_dim(TEN_SECONDS, "pooled", study.embedding.stats) == 88
    flatten = _study_parts("--config", str(EXPERIMENTS / "exploring_aad_flatten.yaml"))
    assert (flatten.embedding.mode, flatten.out) == ("flatten", "results/exploring_aad_flatten")
    assert flatten.embedding.features == study.embedding.features
    assert extractor.embedding_dim(TEN_SECONDS, "flatten") == 12 * 64 + 134 * 12 + 63 * 12 == 3132
    with torch.no_grad():
        parts = extractor.forward_parts(0.1 * torch.randn(1, TEN_SECONDS))
    assert {k: tuple(v.shape) for k, v in parts.items()} == {
        "mel": (1, 12, 64), "mfcc": (1, 134, 12), "cens": (1, 63, 12)}  # fmt: skip


def test_the_preset_embedding_is_seed_study_config(study):
    from aad.features.config import seed_study_config

    preset = FeatureConfig.from_dict(study.embedding.features)
    assert preset.signature() == seed_study_config().signature()


def test_study_methods_and_data(study):
    data = study.data
    assert (data.hparams.layout, data.channel, data.clip_seconds) == ("mimii", "mean", 10.0)
    assert (data.machine_type, data.machine_id) == (["fan", "valve"], ["id_00", "id_02", "id_04"])
    assert data.hparams.protocol == "clean"
    methods = {spec.name: spec for spec in study.methods}
    assert list(methods) == ["isolation_forest", "lof", "ocsvm", "lstm_ae"]
    forest, lof, ocsvm = (methods[n].detector for n in ("isolation_forest", "lof", "ocsvm"))
    assert (forest.n_estimators, forest.scale) == (100, "minmax")
    assert (lof.n_neighbors, lof.scale, ocsvm.scale) == (20, "minmax", "minmax")
    lstm = methods["lstm_ae"]
    assert (lstm.trainer, lstm.batch_size) == ({"max_epochs": 30}, 32)
    assert lstm.model.features.num_frames(TEN_SECONDS) == 313 and lstm.model.input_dim == 64


def _clips() -> Manifest:
    return Manifest(
        ClipRecord(f"/x/{label}_{i}.wav", "mimii", "fan", "id_00", "test", label)
        for label in ("normal", "anomaly")
        for i in range(5)
    )


def test_study_variant_labels_its_protocol_and_the_clean_one_never_tests_training_normals():
    study = _study_parts("--config", str(EXPERIMENTS / "exploring_aad_study.yaml"))
    hparams = study.data.hparams
    assert (hparams.protocol, hparams.train_fraction) == ("study", 0.8)
    assert study.out == "results/exploring_aad_study"
    (group,) = make_groups(_clips(), protocol=hparams.protocol,
                           train_fraction=hparams.train_fraction)  # fmt: skip
    assert group.notes[0] == STUDY_PROTOCOL_LABEL and set(group.train) <= set(group.test)
    (clean,) = make_groups(_clips(), protocol=_study_parts().data.hparams.protocol)
    assert clean.train == []  # no train split here: the clean protocol has nothing to fit


DETECTOR_CLASSES = {"gmm": "GMMDetector", "isolation_forest": "IsolationForestDetector",
                    "knn": "KNNDetector", "lof": "LOFDetector",
                    "mahalanobis": "MahalanobisDetector", "ocsvm": "OneClassSVMDetector",
                    "pyod_ecod": "PyODDetector"}  # fmt: skip


@pytest.mark.parametrize("path", _yamls("detectors"), ids=lambda p: p.name)
def test_detector_presets(path: Path) -> None:
    if path.stem.startswith("pyod"):
        pytest.importorskip("pyod")
    spec = yaml.safe_load(path.read_text())
    detector = detector_from_spec(spec)
    assert isinstance(detector, BaseDetector)
    assert type(detector).__name__ == DETECTOR_CLASSES[path.stem]
    params = spec.get("params") or spec.get("init_args") or {}
    assert all(getattr(detector, key) == value for key, value in params.items())
