"""Checkpoints: the ``aad`` metadata block, safe loading, and finding the one to evaluate.

Every load is ``torch.load(..., weights_only=True)``: a checkpoint is data (tensors, numbers,
strings), never code, so a downloaded ``.ckpt`` whose pickle would call ``os.system`` is
refused before anything runs. The model class a checkpoint names is imported only when it is a
module path under ``aad.`` or a registered class (see :func:`trusted_model_class`), and used
only when it is an :class:`~aad.models.base.AnomalyModule` subclass.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import re
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from aad.models.base import AnomalyModule

FORMAT_VERSION = 2
TRUSTED_PREFIXES = ("aad.",)
"""Model classes a checkpoint may name: ``aad.*``, plus any passed to :func:`trust_module`."""
_trusted: set[str] = set()


class CheckpointError(ValueError):
    """A checkpoint that aad cannot use (unreadable, unsafe, foreign, other format/features)."""


def aad_version() -> str:
    import aad

    return str(getattr(aad, "__version__", "unknown"))


def trust_module(cls: type) -> None:
    """Allow checkpoints naming ``cls`` (a user's own AnomalyModule outside ``aad``)."""
    _trusted.add(f"{cls.__module__}.{cls.__qualname__}")


def checkpoint_metadata(module: AnomalyModule) -> dict[str, Any]:
    """The ``aad`` block written into every checkpoint (plain data only)."""
    cls = type(module)
    return {
        "aad_version": aad_version(),
        "format_version": FORMAT_VERSION,
        "model_class": f"{cls.__module__}.{cls.__qualname__}",
        "feature_config": asdict(module.feature_config),
        "feature_signature": module.feature_signature,
        "sample_rate": module.sample_rate,
        "threshold": float(module.threshold),
        "score": module.score_name,
    }


def check_metadata(checkpoint: Any, path: str) -> dict[str, Any]:
    """The checkpoint's ``aad`` block, or :class:`CheckpointError` saying why it is unusable."""
    meta = checkpoint.get("aad") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict):
        raise CheckpointError(
            f"{path} is not an aad checkpoint (no 'aad' metadata block: written by another "
            "program or an older aad)"
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {version} (written by aad "
            f"{meta.get('aad_version', '?')}); this aad {aad_version()} reads format "
            f"{FORMAT_VERSION} only: evaluate it with the aad version that trained it, or retrain"
        )
    return meta


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``torch.load(path, weights_only=True)`` with aad's errors; never runs code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for damaged or unsafe files
        text = str(error)
        match = re.search(r"(unsupported GLOBAL [\w.]+|GLOBAL [\w.]+ was not an allowed global)",
                          text)  # fmt: skip
        if match:
            reason = (f"it holds pickled objects other than tensors and plain data ({match[1]}),"
                      " which aad never loads: an unsafe or foreign file")  # fmt: skip
        else:
            detail = text.splitlines()[-1] if "Weights only load failed" in text else text
            reason = f"{type(error).__name__}: {detail} (truncated, corrupt, or not a checkpoint)"
        raise CheckpointError(f"cannot read checkpoint {path}: {reason}") from None
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path} is not an aad checkpoint (not a dict)")
    return checkpoint


def trusted_model_class(dotted: str) -> type[AnomalyModule]:
    """Import ``dotted`` only if it is trusted, and return it only if it is an AnomalyModule."""
    from aad.models.base import AnomalyModule

    if not (dotted.startswith(TRUSTED_PREFIXES) or dotted in _trusted):
        raise CheckpointError(
            f"checkpoint names model class {dotted!r}, outside aad: refused (call "
            "aad.checkpoints.trust_module(YourClass) to load your own models)"
        )
    module_name, _, name = dotted.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint model class {dotted} cannot be imported: {error}"
        ) from None
    if not (inspect.isclass(cls) and issubclass(cls, AnomalyModule)):
        raise CheckpointError(f"checkpoint model class {dotted} is not an aad AnomalyModule")
    return cls


def load_module(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[AnomalyModule, dict[str, Any]]:
    """Rebuild a trained module from a checkpoint alone: model, features, normaliser, score
    statistics, threshold. Returns ``(module in eval mode, checkpoint dict)``."""
    checkpoint = read_checkpoint(path, map_location)
    meta = check_metadata(checkpoint, str(path))
    if meta.get("aad_version") != aad_version():
        warnings.warn(
            f"{path} was written by aad {meta.get('aad_version')}, this is aad {aad_version()} "
            f"(same checkpoint format {FORMAT_VERSION}: loading it)",
            stacklevel=2,
        )
    cls = trusted_model_class(str(meta.get("model_class")))
    parameters = inspect.signature(cls.__init__).parameters
    hparams = {
        k: v for k, v in dict(checkpoint.get("hyper_parameters", {})).items() if k in parameters
    }
    stored = meta["feature_config"]
    try:
        module = cls(**{**hparams, "features": stored})
    except (TypeError, ValueError) as error:
        raise CheckpointError(
            f"{path}: cannot rebuild {cls.__name__} from its hyperparameters ({error})"
        ) from None
    if module.feature_signature != meta["feature_signature"]:
        rebuilt = asdict(module.feature_config)
        changed = sorted(k for k in set(rebuilt) | set(stored) if rebuilt.get(k) != stored.get(k))
        detail = ", ".join(changed) if changed else "none: the front-end code changed"
        raise CheckpointError(
            f"feature config mismatch: {path} was trained with feature signature "
            f"{meta['feature_signature']} but this aad computes {module.feature_signature} "
            f"from the same config (fields differing after rebuilding: {detail}); "
            "retrain or use the aad version that trained it"
        )
    try:
        module.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path}: weights do not fit {cls.__name__}: {error}") from None
    return module.eval(), checkpoint


def data_config(checkpoint: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """The DataModule arguments a checkpoint was trained with, ``overrides`` applied."""
    saved = checkpoint.get("datamodule_hyper_parameters") or {}
    return {**{k: v for k, v in saved.items() if not str(k).startswith("_")}, **overrides}


# --------------------------------------------------------------------------- discovery
def resolve_checkpoints(specs: list[str]) -> list[Path]:
    """Checkpoint files from files, globs and run folders (a folder: each run's best)."""
    found: list[Path] = []
    for spec in specs:
        matches = [Path(p) for p in sorted(glob.glob(spec, recursive=True))] or [Path(spec)]
        for match in matches:
            if not match.is_dir():
                found.append(match)
                continue
            folders = sorted({p.parent for p in match.rglob("*.ckpt")})
            if not folders:
                raise FileNotFoundError(f"no .ckpt files under {match}")
            for folder in folders:
                ckpts = sorted(folder.glob("*.ckpt"))
                best = [p for p in ckpts if not p.name.startswith("last")]
                found.append(recorded_best(folder) or (best or ckpts)[-1])
    return list(dict.fromkeys(found))


def recorded_best(folder: Path) -> Path | None:
    """The best checkpoint Lightning's ModelCheckpoint recorded in ``folder/last.ckpt``."""
    last = folder / "last.ckpt"
    if not last.is_file():
        return None
    try:
        callbacks = read_checkpoint(last).get("callbacks", {})
    except CheckpointError:
        return None
    for key, state in callbacks.items():
        if str(key).startswith("ModelCheckpoint") and state.get("best_model_path"):
            candidate = folder / Path(state["best_model_path"]).name
            if candidate.is_file():
                return candidate
    return None


def run_label(path: Path) -> str:
    """``fan/version_0/best-epoch03`` style label of a checkpoint."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "checkpoints":
        return "/".join([*parts[-5:-2], path.stem]).replace("lightning_logs/", "")
    return path.stem
