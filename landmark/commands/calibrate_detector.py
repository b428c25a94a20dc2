"""``landmark calibrate-detector``: measure how a face detector's box maps to the landmark box."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from functools import partial
from pathlib import Path

from landmark.commands import non_negative_int
from landmark.commands.output import write_json
from landmark.config import shared_data_dir
from landmark.detect import DEFAULT_DETECTOR, DETECTORS
from landmark.errors import LandmarkError
from landmark.files import check_writable, write_atomic
from landmark.progress import progress_bar


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("calibrate-detector", help="fit a detector's box -> landmark-box calibration")
    parser.add_argument("--detector", choices=DETECTORS, default=DEFAULT_DETECTOR)
    parser.add_argument("--detector-model", help="model file of the detector (mediapipe; yunet: the shipped one)")
    parser.add_argument(
        "--photos", action="store_true", help="the still-photo settings of the detector (predict, eval, training)"
    )
    parser.add_argument("--data", type=Path, help="300-W folder (default: the shared 300-W training faces)")
    parser.add_argument(
        "--val-fraction",
        type=float,
        metavar="F",
        help="fit on the training part only, leaving out the validation faces a training config with "
        "data.val_fraction F holds out (0.1 for configs/train/300w_68.yaml)",
    )
    parser.add_argument("--split-seed", type=non_negative_int, default=0, help="data.split_seed of that config")
    parser.add_argument(
        "--write-five-point",
        type=Path,
        metavar="PATH",
        help="yunet: write the fitted five-point box model here (the package reads landmark/weights/"
        "yunet_five_point_box.json)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for standard output)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landmark.data.dataset import build_records
    from landmark.detect import build_detector, close_detector
    from landmark.detect.calibration import fit_box_calibration

    if args.json and args.json != "-":
        check_writable(args.json, "--json")  # before detecting faces in the whole folder
    if args.write_five_point:
        check_writable(args.write_five_point, "--write-five-point")
    folder = args.data or shared_data_dir() / "faces300w" / "train"
    data_cfg = {"format": "300w", "root": str(folder)}
    if args.val_fraction is not None:
        data_cfg.update(val_fraction=args.val_fraction, split_seed=args.split_seed)
    records = build_records(data_cfg, "train")
    detector = build_detector(args.detector, args.detector_model, photos=args.photos)
    try:
        result = fit_box_calibration(
            detector, records, progress=partial(progress_bar, desc="detecting faces", unit="face")
        )
    except ValueError as err:  # the detector matched no face
        raise LandmarkError(f"{folder}: {err}") from None
    finally:
        close_detector(detector)
    result["calibration"] = asdict(result["calibration"])
    five_point = result.pop("five_point_box", None)
    if args.write_five_point:
        if five_point is None:
            raise LandmarkError(f"--write-five-point: the {args.detector} detector gives no five face points")
        write_atomic(args.write_five_point, (json.dumps(five_point.to_json()) + "\n").encode())
    if args.json == "-":
        write_json("-", result)
        return 0
    print(f"{args.detector}{' (photos)' if args.photos else ''} on {folder} ({len(records)} faces): {result}")
    if args.write_five_point:
        print(f"five-point box model written to {args.write_five_point}")
    if args.json:
        write_json(args.json, result)
    return 0
