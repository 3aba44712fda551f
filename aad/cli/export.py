"""``evaluate.py export``: one file from raw 16 kHz PCM to anomaly scores, plus its JSON.

    evaluate.py export --ckpt CKPT --format onnx|torchscript --out DIR [--clip_seconds S]
    evaluate.py export --ckpt CLASSIFIER_CKPT --machine_id id_00 --out DIR
    evaluate.py export --detector DET.npz [--embedding.features ...] --format onnx --out DIR

A checkpoint (LSTM-AE or DCASE AE with any ``score``; the machine-id classifier with score
``mahalanobis`` or ``nll``, for one id or the nearest id) becomes ``DIR/<name>.onnx`` (or ``.pt``)
holding the feature front-end, normalisation statistics, model and score pooling, and
``DIR/<name>.json`` (threshold, sample rate, clip length, feature signature, aad version,
machine type, score). The file is run with the runtime it names on probe clips and checked
against ``AnomalyModule.score`` before the command succeeds. A detector on pooled feature
embeddings exports its embedding front-end only (the fitted detector is not exportable: the
command says so and the JSON records it).
"""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser, Namespace

from aad.embeddings import EmbeddingConfig, embedding_signature
from aad.export.exporter import ExportResult
from aad.export.graph import NotExportableError
from aad.export.onnx import OPSET
from aad.export.sidecar import FORMATS


def export_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="evaluate.py export", description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=str | None, default=None, help="checkpoint or run folder")
    parser.add_argument(
        "--detector", type=str | None, default=None, help="a detector .npz (BaseDetector.save)"
    )
    parser.add_argument("--format", type=str, default="onnx", help="onnx or torchscript")
    parser.add_argument("--out", type=str, default="export", help="output folder")
    parser.add_argument("--name", type=str | None, default=None, help="file stem")
    parser.add_argument(
        "--clip_seconds",
        type=float | None,
        default=None,
        help="window the model scores (default: the checkpoint's data.clip_seconds)",
    )
    parser.add_argument(
        "--machine_id",
        type=str | None,
        default=None,
        help="machine-id classifier: the id the file scores (default: the nearest id)",
    )
    parser.add_argument("--opset", type=int, default=OPSET, help="ONNX opset (>= 17)")
    parser.add_class_arguments(EmbeddingConfig, "embedding", help="a detector's embedding")
    return parser


def export_detector(args: Namespace, embedding: EmbeddingConfig) -> ExportResult:
    """The embedding front-end of a detector file (the detector itself is not exportable)."""
    from aad.detectors import load_detector
    from aad.export.exporter import export_embedding
    from aad.features import FeatureExtractor

    detector = load_detector(args.detector)
    kind = f"{type(detector).__name__} ({type(detector).__module__}.{type(detector).__name__})"
    fitted = str(getattr(detector, "feature_signature_", "") or "")
    if fitted.startswith("latent:"):
        raise NotExportableError(
            f"{args.detector}: {kind} scores a model's latent code ({fitted}): a latent "
            "front-end is not exportable; export the model itself (--ckpt) instead"
        )
    if embedding.mode != "pooled":
        raise NotExportableError(
            f"embedding.mode={embedding.mode!r} is not exportable (its width depends on the "
            "clip length): only mode 'pooled' is"
        )
    signature = embedding_signature(embedding.features, embedding.mode, tuple(embedding.stats))
    if fitted and fitted != signature:
        raise ValueError(
            f"{args.detector} was fitted on embeddings with signature {fitted}, the "
            f"--embedding.* settings give {signature}: pass the embedding block it was fitted "
            "with (features, mode, stats)"
        )
    reason = (
        f"{kind} is not exportable to {args.format}: the file computes the clip embedding "
        f"only; score its rows with aad.detectors.load_detector({str(args.detector)!r})"
        ".decision_function"
    )
    block = {
        "class_path": f"{type(detector).__module__}.{type(detector).__name__}",
        "file": str(args.detector),
        "threshold": float(detector.threshold_),
        "exported": False,
        "reason": reason,
    }
    seconds = args.clip_seconds or 10.0
    result = export_embedding(
        FeatureExtractor(embedding.features),
        list(embedding.stats),
        args.format,
        args.out,
        clip_seconds=seconds,
        name=args.name or "embedding",
        detector=block,
        signature=signature,
        opset=args.opset,
    )
    print(f"NOT EXPORTED: {reason}", file=sys.stderr)
    return result


def main(argv: list[str] | None = None) -> ExportResult:
    """Parse, export, check, print one summary; returns :class:`ExportResult`."""
    from aad.export.exporter import export_checkpoint

    parser = export_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.format not in FORMATS:
        parser.error(f"--format must be one of {sorted(FORMATS)}, got {args.format!r}")
    if (args.ckpt is None) == (args.detector is None):
        parser.error("give exactly one of --ckpt (a trained model) or --detector (a .npz)")
    if args.detector is not None:
        embedding = parser.instantiate_classes(args).embedding
        result = export_detector(args, embedding)
    else:
        from aad.checkpoints import resolve_checkpoints

        paths = resolve_checkpoints([args.ckpt])
        if len(paths) != 1:
            listing = ", ".join(map(str, paths))
            raise ValueError(
                f"--ckpt {args.ckpt} names {len(paths)} checkpoints: pick one of {listing}"
            )
        result = export_checkpoint(
            paths[0],
            args.format,
            args.out,
            name=args.name or "model",
            clip_seconds=args.clip_seconds,
            machine_id=args.machine_id,
            opset=args.opset,
        )
    meta = result.meta
    size = result.model_path.stat().st_size / 2**20
    what = meta.model_class.rsplit(".", 1)[1] if meta.model_class else "embedding front-end"
    score = f", score {meta.score}" if meta.score else ""
    print(
        f"exported {what}{score} -> {result.model_path} ({size:.2f} MiB) + "
        f"{result.meta_path.name}; runtime {meta.runtime}; {meta.sample_rate} Hz, "
        f"{meta.clip_seconds:g} s clips, threshold {meta.threshold}; matches aad's scoring "
        f"within {meta.parity['max_relative_gap']:.2g} (relative, tolerance "
        f"{meta.parity['rtol']:g}) at {meta.parity['lengths']} samples"
    )
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
