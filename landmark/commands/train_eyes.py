"""``landmark train-eyes``: train the eye-state model on real eye crops plus rendered eyes, export it to ONNX.

The real crops come from a CEW-layout folder (open/, closed/); only the training part of its by-face split is
trained on, and the scores on the validation part (other faces) are printed and written beside the model.
Deterministic for a given --seed. The shipped ``landmark/weights/eye_state.onnx`` is
``landmark train-eyes --data ../shared/data/cew_eyes --faces ../shared/data/faces300w/train --pretrained
../shared/pretrained/mobilenet_v1_0.25_imagenet_relu.pth.tar --out landmark/weights/eye_state.onnx``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from landmark.commands import non_negative_int, positive_float, positive_int
from landmark.errors import LandmarkError
from landmark.files import check_writable, make_folder, write_atomic


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train-eyes", help="train the open/closed eye-state model and export ONNX", description=__doc__
    )
    parser.add_argument("--data", type=Path, help="folder with open/ and closed/ eye crops (CEW layout)")
    parser.add_argument("--out", type=Path, required=True, help="the ONNX file to write (a .json report goes beside)")
    parser.add_argument(
        "--faces",
        type=Path,
        help="a 300-W folder (NAME.jpg + NAME.pts): the narrow open eyes of its training faces (val fraction 0.1, "
        "seed 0, the landmark model's split; annotated eye aspect ratio 0.12-0.18: looking down, smiling, "
        "squinting) are added as open eyes",
    )
    parser.add_argument(
        "--faces-share",
        type=positive_float,
        default=0.05,
        help="with --faces: the share of the loss those eyes carry (default 0.05)",
    )
    parser.add_argument(
        "--rendered-faces",
        type=non_negative_int,
        default=1500,
        help="synthetic faces whose eyes are added (default 1500; 0 = none)",
    )
    parser.add_argument(
        "--arch",
        choices=("mobilenet", "small"),
        default="mobilenet",
        help="eye network: MobileNetV1 0.25's first layers (default; give --pretrained) or three plain conv blocks",
    )
    parser.add_argument(
        "--pretrained",
        type=Path,
        help="ImageNet MobileNetV1 0.25 weights to start --arch mobilenet from "
        "(../shared/pretrained/mobilenet_v1_0.25_imagenet_relu.pth.tar); without it the network starts from scratch",
    )
    parser.add_argument("--epochs", type=positive_int, default=30, help="epochs (default 30)")
    parser.add_argument("--lr", type=positive_float, default=0.001, help="peak learning rate (default 0.001)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of everything random (default 0)")
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (default 1; the result depends on it, the shipped model used 1)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landmark.eyes.train import EyeTrainConfig, export_eye_model, train_eye_model  # torch: training only

    if args.out.suffix.lower() != ".onnx":
        raise LandmarkError(f"--out {args.out}: expected a file name ending in .onnx")
    if args.data is None and args.rendered_faces == 0:
        raise LandmarkError("nothing to train on: give --data or --rendered-faces > 0")
    if args.faces is not None and not args.faces.is_dir():
        raise LandmarkError(f"--faces {args.faces}: folder not found (expected 300-W faces: NAME.jpg + NAME.pts)")
    rendered_share = EyeTrainConfig.rendered_share if args.rendered_faces else 0.0
    if args.faces is not None and args.data is not None and args.faces_share + rendered_share >= 1.0:
        raise LandmarkError(
            f"--faces-share {args.faces_share:g}: must be below {1.0 - rendered_share:g} "
            f"(the rendered eyes carry {rendered_share:g} of the loss, the real crops of --data the rest)"
        )
    if args.pretrained is not None and args.arch != "mobilenet":
        raise LandmarkError(f"--pretrained {args.pretrained}: only --arch mobilenet starts from ImageNet weights")
    check_writable(args.out, "--out")
    make_folder(args.out.parent, "--out")  # now, not after minutes of training
    cfg = EyeTrainConfig(
        arch=args.arch,
        pretrained=args.pretrained,
        data=args.data,
        faces=args.faces,
        faces_share=args.faces_share,
        rendered_faces=args.rendered_faces,
        epochs=args.epochs,
        lr=args.lr,
        seed=args.seed,
        threads=args.threads,
    )
    net, report = train_eye_model(cfg, progress=not args.no_progress, log=print)
    export_eye_model(net, args.out, report["threshold"])
    report_path = args.out.with_suffix(".json")
    summary = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()}, **report}
    write_atomic(report_path, json.dumps(summary, indent=2) + "\n")
    last = report["history"][-1]
    print(f"epoch {last['epoch']}: training loss {last['loss']:.4f}")
    if "val" in report:
        v = report["val"]
        print(
            f"validation (faces never trained on): n {v['n']}, accuracy {v['accuracy']:.4f}, AUC {v['auc']:.4f}, "
            f"recall open {v['recall_open']:.4f}, closed {v['recall_closed']:.4f}"
        )
    print(f"wrote {args.out} and {report_path}")
    return 0
