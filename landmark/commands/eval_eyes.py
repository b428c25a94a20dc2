"""``landmark eval-eyes``: score the eye-state model on a folder of eye crops with open/ and closed/ subfolders.

The CEW layout (``../shared/data/cew_eyes``): 24 x 24 grey crops, about 1.5 eye widths across, centred on the
eye. ``--split val`` scores only the faces the shipped model was validated on (never trained on) under the
project's by-face split of that folder; ``all`` (the default) scores every crop, e.g. a held-out set.

``--faces DIR`` runs the open-eye check instead: photos of open-eyed faces with 300-W annotations through the
whole pipeline, reporting how many it reads as eyes closed; by default on the validation faces of the 300-W
split (those the default landmark model never trained on), with ``--split all`` on every face of a held-out
folder.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from landmark.commands.output import write_json
from landmark.errors import LandmarkError
from landmark.progress import progress_bar


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval-eyes",
        help="accuracy, recall and ROC AUC of the eye-state model on open/ and closed/ eye crops",
        description=__doc__,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", type=Path, help="folder with open/ and closed/ eye crop images")
    source.add_argument(
        "--faces",
        type=Path,
        help="instead: a 300-W folder of open-eyed faces; the whole pipeline's eyes-closed rate (on its val split "
        "unless --split says otherwise)",
    )
    parser.add_argument(
        "--landmark-model", type=Path, help="with --faces: the landmark model (default: landmark/weights/default.onnx)"
    )
    parser.add_argument("--val-fraction", type=float, default=0.1, help="with --faces: the split's val fraction (0.1)")
    parser.add_argument("--split-seed", type=int, default=0, help="with --faces: the split's seed (0)")
    parser.add_argument("--model", type=Path, help="eye-state ONNX model (default: landmark/weights/eye_state.onnx)")
    parser.add_argument(
        "--split",
        choices=("all", "train", "val"),
        help="which faces of the split to score: with --data the by-face split of the crops (default: all), with "
        "--faces the 300-W split (default: val, the faces the default landmark model never trained on; all for a "
        "held-out folder)",
    )
    parser.add_argument(
        "--latency", action="store_true", help="also time the model and the eye crops per face (1 thread, ~10 s)"
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the scores as JSON ('-' = stdout)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.faces is not None:
        return run_faces(args)
    from landmark.eyes.data import load_eye_folder
    from landmark.eyes.metrics import eye_state_scores
    from landmark.eyes.model import DEFAULT_EYE_MODEL, EyeStateModel, eye_latency

    split = args.split or "all"  # --split has no default: --faces defaults to val
    eyes = load_eye_folder(args.data, split)  # a missing folder or an unreadable image: one error line
    model = EyeStateModel.from_path(args.model)
    start = time.perf_counter()
    probs = np.concatenate([model.predict_crops(eyes.crops[i : i + 256]) for i in range(0, len(eyes), 256)])
    ms_per_eye = 1000 * (time.perf_counter() - start) / max(len(eyes), 1)
    scores = eye_state_scores(probs, eyes.labels, model.threshold)
    latency = eye_latency(model) if args.latency else None

    table_out = sys.stderr if args.json_out == "-" else sys.stdout
    name = args.model or DEFAULT_EYE_MODEL
    print(
        f"eye-state model {name} | data {args.data} (split {split}) | closed when p >= {model.threshold:g}",
        file=table_out,
    )
    print(format_table(scores), file=table_out)
    if latency is not None:
        print(
            f"latency per face (both eyes, ONNX Runtime, 1 thread; fastest / median round): model "
            f"{latency['model_ms_per_face']:.4f} / {latency['model_ms_per_face_median']:.4f} ms, cropping "
            f"{latency['crop_ms_per_face']:.4f} / {latency['crop_ms_per_face_median']:.4f} ms",
            file=table_out,
        )
    if args.json_out is not None:
        keys = ("n", "accuracy", "auc", "recall_open", "recall_closed", "threshold", "n_open", "n_closed")
        report = {key: scores[key] for key in keys}
        report.update(data=str(args.data), split=split, model=str(name), ms_per_eye_batched=round(ms_per_eye, 4))
        if latency is not None:
            report.update({key: round(value, 4) for key, value in latency.items()})
        write_json(args.json_out, report)
    return 0


def run_faces(args: argparse.Namespace) -> int:
    """The 300-W open-eye check (``landmark.eyes.faces``) on the faces of the chosen split (default: val)."""
    from landmark.data.readers import read_300w, split_records
    from landmark.demo_app import check_model_path
    from landmark.detect import build_detector, close_detector
    from landmark.eyes.faces import open_eye_check
    from landmark.eyes.model import DEFAULT_EYE_MODEL, EyeStateModel
    from landmark.inference.predictor import LandmarkPredictor

    if not args.faces.is_dir():
        raise LandmarkError(f"{args.faces}: folder not found (expected 300-W faces: NAME.jpg + NAME.pts)")
    records = read_300w(args.faces)
    split = args.split or "val"
    train, val = split_records(records, args.val_fraction, args.split_seed)
    faces = {"all": records, "train": train, "val": val}[split]
    model_path = check_model_path(args.landmark_model)
    predictor = LandmarkPredictor.from_path(model_path)
    eye_model = EyeStateModel.from_path(args.model)
    detector = build_detector(None, None, photos=True)
    try:
        bar = progress_bar(faces, total=len(faces), desc="open-eye check", unit="face")
        result = open_eye_check(bar, predictor, detector, eye_model)
    finally:
        close_detector(detector)
    table_out = sys.stderr if args.json_out == "-" else sys.stdout
    print(
        f"open-eyed faces {args.faces} ({split} split: val fraction {args.val_fraction:g}, seed {args.split_seed}) | "
        f"landmarks {model_path} | eye model {args.model or DEFAULT_EYE_MODEL}",
        file=table_out,
    )
    print(
        f"faces {result['n']}, detected {result['detected']}; reported eyes closed: fused {result['closed']} "
        f"({_or_dash(result['closed_rate'], '{:.1%}')}), EAR alone {result['closed_ear_only']} "
        f"({_or_dash(result['closed_ear_only_rate'], '{:.1%}')}); mean p (smaller closed probability of both eyes) "
        f"{_or_dash(result['mean_prob_closed'], '{:.3f}')}, 99th percentile "
        f"{_or_dash(result['p99_prob_closed'], '{:.3f}')}",
        file=table_out,
    )
    print(
        f"faces whose annotated eyes are open (annotated EAR of both eyes >= {result['open_ear_min']:g}): "
        f"{result['annotated_open']}; reported eyes closed: fused {result['annotated_open_closed']} "
        f"({_or_dash(result['annotated_open_closed_rate'], '{:.1%}')}), EAR alone "
        f"{result['annotated_open_closed_ear_only']}",
        file=table_out,
    )
    if args.json_out is not None:
        write_json(
            args.json_out,
            {
                "faces": str(args.faces),
                "val_fraction": args.val_fraction,
                "split_seed": args.split_seed,
                "split": split,
                "landmark_model": str(model_path),
                **result,
            },
        )
    return 0


def _or_dash(value: float | None, template: str) -> str:
    """``template`` filled with ``value``, or '-' when there is none (no face detected, no eye read)."""
    return "-" if value is None else template.format(value)


def format_table(scores: dict) -> str:
    """A fixed-width table of the scores; '-' where a class is absent."""

    def num(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    header = (
        f"{'n':>6}{'open':>6}{'closed':>8}{'accuracy':>10}{'recall open':>13}{'recall closed':>15}{'AUC':>8}"
        f"{'threshold':>11}"
    )
    row = (
        f"{scores['n']:>6}{scores['n_open']:>6}{scores['n_closed']:>8}{num(scores['accuracy']):>10}"
        f"{num(scores['recall_open']):>13}{num(scores['recall_closed']):>15}{num(scores['auc']):>8}"
        f"{scores['threshold']:>11.3f}"
    )
    return "\n".join([header, "-" * len(header), row])
