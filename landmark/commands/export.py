"""``landmark export``: a checkpoint -> ONNX (fp32, optionally INT8) with metadata and a parity check."""

from __future__ import annotations

import argparse
from pathlib import Path

from landmark.errors import LandmarkError

DATA_FORMATS = ("300w", "wflw", "csv", "json")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a checkpoint to ONNX (optionally also INT8)")
    parser.add_argument("--checkpoint", type=Path, required=True, help="a .pt checkpoint (e.g. runs/NAME/best.pt)")
    parser.add_argument("--out", type=Path, required=True, help="the fp32 ONNX file to write, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset, 17 or newer (default: %(default)s)")
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
        "--pt",
        type=Path,
        metavar="PATH",
        help="also write an inference-only checkpoint (EMA weights, no optimiser state) here",
    )
    parser.set_defaults(run=run)


def int8_path(out: Path) -> Path:
    """model.onnx -> model.int8.onnx"""
    return out.with_name(f"{out.stem}.int8{out.suffix or '.onnx'}")


def run(args: argparse.Namespace) -> int:
    from landmark.inference.export import export_checkpoint

    if args.int8 and args.calibration is None:
        raise LandmarkError("--int8 needs --calibration DATA (annotated faces, see --data-format)")
    if args.calibration_size <= 0:
        raise LandmarkError(f"--calibration-size: expected a positive number, got {args.calibration_size}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = export_checkpoint(args.checkpoint, args.out, args.opset)
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

        int8 = export_int8(args.out, int8_path(args.out), args.data_format, args.calibration, args.calibration_size)
        print(f"wrote {int8['path']} ({int8['bytes'] / 1024:.0f} KB, INT8 QDQ per-channel)")
        print(
            f"NME on {int8['n']} crops of {args.calibration}: fp32 {int8['nme_fp32']:.4f} -> "
            f"int8 {int8['nme_int8']:.4f} (change {int8['nme_change']:+.4f})"
        )
    return 0
