"""``landmark export``: a checkpoint -> ONNX (fp32, optionally INT8) with metadata and a parity check."""

from __future__ import annotations

import argparse
from pathlib import Path

from landmark.errors import LandmarkError
from landmark.files import check_writable, make_folder, same_path

DATA_FORMATS = ("300w", "wflw", "csv", "json")
# landmark.inference.quantize's CALIBRATION_METHODS and CALIBRATION_BOX_JITTER, without importing it
CALIBRATION_METHODS = ("percentile", "minmax")
CALIBRATION_BOX_JITTER = 0.2


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a checkpoint to ONNX (optionally also INT8)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a .pt checkpoint (e.g. runs/NAME/best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the fp32 ONNX file to write, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 to 20 (default: %(default)s)")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write an INT8 model beside --out (NAME.int8.onnx); needs --calibration",
    )
    parser.add_argument("--calibration", type=Path, help="annotated faces for INT8 calibration (dataset folder/file)")
    parser.add_argument("--data-format", choices=DATA_FORMATS, default="300w", help="format of --calibration")
    parser.add_argument(
        "--calibration-size", type=int, default=256, help="faces used to calibrate and compare (default: %(default)s)"
    )
    parser.add_argument(
        "--calibration-method",
        choices=CALIBRATION_METHODS,
        default="percentile",
        help="how INT8 sets each activation's range from the calibration crops: its 99.99th percentile or its "
        "extremes (default: %(default)s)",
    )
    parser.add_argument(
        "--calibration-jitter",
        type=float,
        default=CALIBRATION_BOX_JITTER,
        metavar="J",
        help="cut every second calibration crop around the landmark box moved and scaled by up to J of its side, "
        "as a detector's box places faces; 0 centres them all (default: %(default)s)",
    )
    parser.add_argument(
        "--no-equalize",
        action="store_true",
        help="with --int8: keep each map's channel scales as trained instead of equalizing their ranges on the "
        "calibration crops first (the default; landmark/models/equalize.py)",
    )
    parser.add_argument(
        "--pt",
        type=Path,
        metavar="PATH",
        help="also write an inference-only checkpoint (EMA weights, no optimiser state) here",
    )
    parser.set_defaults(run=run)


def int8_path(out: Path) -> Path:
    """model.onnx -> model.int8.onnx"""
    return out.with_name(f"{out.stem}.int8{out.suffix or '.onnx'}")


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse outputs that would overwrite the checkpoint being exported or each other, or cannot be written."""
    outputs = [("--out", args.out)]
    if args.pt:
        outputs.append(("--pt", args.pt))
    if args.int8:
        outputs.append(("the INT8 model", int8_path(args.out)))
    for i, (label, path) in enumerate(outputs):
        if same_path(path, args.checkpoint):
            raise LandmarkError(f"{label} {path}: is the checkpoint being exported (--checkpoint); write another file")
        for other_label, other in outputs[:i]:
            if same_path(path, other):
                raise LandmarkError(f"{label} {path}: {other_label} writes the same file; give each its own path")
        check_writable(path, label)


def run(args: argparse.Namespace) -> int:
    from landmark.inference.export import check_opset, export_checkpoint

    check_opset(args.opset)  # before any slow work: the exporter would fail only after loading everything
    if args.int8 and args.calibration is None:
        raise LandmarkError("--int8 needs --calibration DATA (annotated faces, see --data-format)")
    if args.calibration_size <= 0:
        raise LandmarkError(f"--calibration-size: expected a positive number, got {args.calibration_size}")
    if not 0.0 <= args.calibration_jitter <= 0.5:
        raise LandmarkError(
            f"--calibration-jitter: expected 0 to 0.5 (a share of the box side), got {args.calibration_jitter}"
        )
    check_outputs(args)
    crops = None
    if args.int8:  # read the calibration faces first: bad --calibration data must not leave a new .onnx behind
        from landmark.checkpoint import load_model
        from landmark.inference.metadata import crop_scale_of
        from landmark.inference.quantize import dataset_crops

        model, scheme, state = load_model(args.checkpoint)
        size = int(model.input_size)
        crops = dataset_crops(
            args.data_format,
            args.calibration,
            scheme,
            size,
            crop_scale_of(state),
            args.calibration_size,
            args.calibration_jitter,
        )
    make_folder(args.out.parent, "--out")
    equalize_on = crops[0] if crops is not None and not args.no_equalize else None
    summary = export_checkpoint(args.checkpoint, args.out, args.opset, equalize_on)
    print(
        f"wrote {summary['path']} ({summary['bytes'] / 1024:.0f} KB, opset {summary['opset']}); "
        f"ONNX Runtime vs PyTorch max abs diff {summary['max_abs_diff']:.2e}"
    )
    if args.pt:
        from landmark.checkpoint import inference_checkpoint, load_checkpoint, save_checkpoint

        save_checkpoint(inference_checkpoint(load_checkpoint(args.checkpoint)), args.pt)
        print(f"wrote {args.pt} ({args.pt.stat().st_size / 1024:.0f} KB, inference weights only)")
    if args.int8:
        from landmark.inference.quantize import export_int8

        int8 = export_int8(
            args.out,
            int8_path(args.out),
            args.data_format,
            args.calibration,
            args.calibration_size,
            crops,
            args.calibration_method,
            args.calibration_jitter,
        )
        print(f"wrote {int8['path']} ({int8['bytes'] / 1024:.0f} KB, INT8 QDQ per-channel, {int8['method']} ranges)")
        print(
            f"NME on {int8['n']} crops of {args.calibration}: fp32 {int8['nme_fp32']:.4f} -> "
            f"int8 {int8['nme_int8']:.4f} (change {int8['nme_change']:+.4f})"
        )
    return 0
