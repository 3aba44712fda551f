"""Write a graph to one ONNX file (``torch.onnx.export(dynamo=True)``, dynamic batch and
samples axes). ``torch.stft`` needs opset 17 or later; the default is :data:`OPSET`."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

OPSET = 18


def write_onnx(
    graph: nn.Module,
    path: str | Path,
    example: torch.Tensor,
    min_samples: int,
    output_names: Sequence[str] = ("clip_scores", "frame_scores"),
    opset: int = OPSET,
) -> Path:
    """Export ``graph`` (input ``waveform`` ``(batch, samples)``) to ``path`` as one file.

    ``example`` must have 2+ rows (a batch of 1 would be specialised). Raises ``ImportError``
    naming the ``deploy`` extra when onnx/onnxscript are missing.
    """
    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"ONNX export needs onnx and onnxscript ({error}): pip install 'aad[deploy]'"
        ) from None
    if opset < 17:
        raise ValueError(f"opset {opset} < 17: torch.stft exports to ONNX from opset 17")
    batch = torch.export.Dim("batch", min=1)
    samples = torch.export.Dim("samples", min=int(min_samples))
    path = Path(path)
    with _quiet():
        program = torch.onnx.export(
            graph,
            (example,),
            input_names=["waveform"],
            output_names=list(output_names),
            dynamo=True,
            external_data=False,
            opset_version=opset,
            dynamic_shapes={"waveform": {0: batch, 1: samples}},
            verbose=False,
            optimize=True,
        )
        program.save(str(path), external_data=False)
    return path


@contextlib.contextmanager
def _quiet():
    """The exporter prints progress lines and warns about optional torchvision ops."""
    loggers = [
        logging.getLogger(name)
        for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnx_ir", "onnxscript")
    ]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
