"""``landmark calibrate-detector``: measure how a face detector's box maps to the landmark box."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from functools import partial
from pathlib import Path

from tqdm import tqdm

from landmark.commands.output import write_json
from landmark.config import shared_data_dir
from landmark.detect import DETECTORS
from landmark.errors import LandmarkError
from landmark.files import check_writable


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("calibrate-detector", help="fit a detector's box -> landmark-box calibration")
    parser.add_argument("--detector", choices=DETECTORS, default="haar")
    parser.add_argument("--detector-model", help="model file for the mediapipe / yunet detectors")
    parser.add_argument(
        "--photos", action="store_true", help="calibrate the Haar detector for still photos (predict, eval)"
    )
    parser.add_argument("--data", type=Path, help="300-W folder (default: the shared 300-W training faces)")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON ('-' for standard output)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from landmark.detect import build_detector
    from landmark.detect.calibration import fit_box_calibration

    if args.json and args.json != "-":
        check_writable(args.json, "--json")  # before detecting faces in the whole folder
    folder = args.data or shared_data_dir() / "faces300w" / "train"
    detector = build_detector(args.detector, args.detector_model, fallback=False, photos=args.photos)
    try:
        result = fit_box_calibration(detector, folder, progress=partial(tqdm, desc="detecting faces", leave=False))
    except ValueError as err:  # the detector matched no face
        raise LandmarkError(str(err)) from None
    result["calibration"] = asdict(result["calibration"])
    if args.json == "-":
        write_json("-", result)
        return 0
    print(f"{args.detector}{' (photos)' if args.photos else ''} on {folder}: {result}")
    if args.json:
        write_json(args.json, result)
    return 0
