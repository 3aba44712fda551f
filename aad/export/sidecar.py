"""The JSON written beside an exported model: what a runtime needs to feed and judge it.

Plain data, readable without torch. ``kind`` is ``scores`` (the file maps PCM to clip and
frame scores) or ``embedding`` (a detector's front-end: PCM to clip embeddings; the fitted
detector itself stays in its ``.npz``, see ``detector.exported``).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT = "aad.export"
FORMAT_VERSION = 1
FORMATS = {"onnx": ".onnx", "torchscript": ".pt"}
RUNTIMES = {"onnx": "onnxruntime", "torchscript": "torch.jit"}
KINDS = ("scores", "embedding")


@dataclass
class ExportMeta:
    """Everything about an exported file except the graph (written as ``<name>.json``).

    ``threshold`` is ``None`` when the checkpoint holds none (decisions are then n/a).
    ``frame_step_s`` / ``frame_offset_s``: frame ``i`` of ``frame_scores`` is centred at
    ``frame_offset_s + i * frame_step_s`` seconds into the clip.
    """

    format: str
    file: str
    kind: str
    sample_rate: int
    clip_seconds: float
    min_samples: int
    feature_signature: str
    aad_version: str
    threshold: float | None = None
    score: str | None = None
    top_k: int | None = None
    model_class: str | None = None
    machine_type: str | None = None
    machine_id: str | None = None
    frame_step_s: float | None = None
    frame_offset_s: float | None = None
    feature_config: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    source: str = ""
    opset: int | None = None
    parity: dict[str, Any] = field(default_factory=dict)
    detector: dict[str, Any] | None = None
    schema: str = FORMAT
    schema_version: int = FORMAT_VERSION

    @property
    def runtime(self) -> str:
        return RUNTIMES[self.format]

    @property
    def clip_samples(self) -> int:
        return int(round(self.clip_seconds * self.sample_rate))

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        data = _json_safe(asdict(self))
        data["runtime"] = self.runtime
        path.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
        return path


def _json_safe(value: Any) -> Any:
    """Non-finite floats (e.g. chroma ``norm: inf``) as the strings ``"inf"``/``"nan"``."""
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def _finite_or_none(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(float(value)) else None


def read_meta(path: str | Path) -> ExportMeta:
    """Read and check an export's JSON; ``ValueError`` names what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read export description {path}: {error}") from None
    if not isinstance(data, dict) or data.get("schema") != FORMAT:
        raise ValueError(f"{path} is not an aad export description (schema != {FORMAT!r})")
    if data.get("schema_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} has aad export format {data.get('schema_version')}; this aad reads "
            f"{FORMAT_VERSION}: re-export the checkpoint with this aad"
        )
    data.pop("runtime", None)
    known = set(ExportMeta.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown}")
    meta = ExportMeta(**data)
    if meta.format not in FORMATS or meta.kind not in KINDS:
        raise ValueError(f"{path}: format {meta.format!r} / kind {meta.kind!r} not supported")
    meta.threshold = _finite_or_none(meta.threshold)
    return meta


def find_meta(path: str | Path) -> Path:
    """The JSON of an export given the JSON, the model file beside it, or their folder."""
    path = Path(path)
    if path.is_dir():
        found = sorted(p for p in path.glob("*.json") if _is_export(p))
        if len(found) != 1:
            raise FileNotFoundError(
                f"{path}: expected one aad export description (*.json), found {len(found)}"
            )
        return found[0]
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"export description not found: {path}")
        return path
    beside = path.with_suffix(".json")
    if not beside.is_file():
        raise FileNotFoundError(f"{path}: its description {beside.name} is not beside it")
    return beside


def _is_export(path: Path) -> bool:
    try:
        return json.loads(path.read_text()).get("schema") == FORMAT
    except (OSError, json.JSONDecodeError, AttributeError):
        return False
