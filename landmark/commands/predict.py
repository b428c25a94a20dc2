"""``landmark predict``: detect faces in images, predict their landmarks, write annotated copies and JSON.

The JSON is a list with one entry per image that could be read::

    [{"image": "photos/a.jpg", "width": 640, "height": 480,
      "faces": [{"box": [x_min, y_min, x_max, y_max], "score": 0.98,
                 "landmarks": [[x, y], ...], "pose_deg": [yaw, pitch, roll]}]}]

Coordinates are image pixels (0-based, pixel centres at integers); pose angles are degrees with the signs of
``landmark.data.pose``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from landmark.commands import positive_int
from landmark.config import default_model_path
from landmark.detect import DETECTORS, build_detector, close_detector
from landmark.detect.calibration import as_detections
from landmark.errors import LandmarkError
from landmark.progress import progress_bar

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".webp", ".tif", ".tiff"}
PROGRESS_MIN_IMAGES = 5  # a bar for folders; a handful of files just prints the summary


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="detect faces and predict landmarks in images or folders")
    parser.add_argument("inputs", nargs="+", type=Path, metavar="IMAGE_OR_DIR", help="image files or folders")
    parser.add_argument("--model", type=Path, help="a .onnx or .pt model (default: the package's default model)")
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        help="face detector (default: yunet, the shipped one; haar only when yunet cannot be loaded)",
    )
    parser.add_argument("--detector-model", type=Path, help="model file of the detector, where it needs one")
    parser.add_argument(
        "--out", type=Path, default=Path("runs/predict"), help="annotated images (default: %(default)s)"
    )
    parser.add_argument(
        "--json", metavar="FILE", help="results as JSON, '-' for stdout (default: OUT/predictions.json)"
    )
    parser.add_argument("--threads", type=positive_int, help="inference threads (default: the runtime's choice)")
    parser.add_argument(
        "--flip-test",
        action="store_true",
        help="average with the prediction on the mirrored face: more accurate, twice the model time",
    )
    parser.set_defaults(run=run)


def image_paths(inputs: list[Path]) -> list[Path]:
    """The image files named, and those directly inside the folders named, in a stable order."""
    paths: list[Path] = []
    for item in inputs:
        if item.is_dir():
            paths += sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        elif item.is_file():
            paths.append(item)
        else:
            raise LandmarkError(f"{item}: no such image or folder")
    if not paths:
        raise LandmarkError(f"no images found in {', '.join(str(p) for p in inputs)}")
    return paths


def annotate(image: np.ndarray, faces: list[dict[str, Any]]) -> np.ndarray:
    """A copy of ``image`` with each face box and its landmarks as small dots."""
    canvas = image.copy()
    for face in faces:
        x_min, y_min, x_max, y_max = (int(round(v)) for v in face["box"])
        side = max(x_max - x_min, y_max - y_min)
        thickness = max(1, side // 150)
        cv2.rectangle(canvas, (x_min, y_min), (x_max, y_max), (0, 200, 0), thickness, cv2.LINE_AA)
        radius = max(1, side // 120)
        for x, y in face["landmarks"]:
            # draw at 1/16 px precision (shift=4) so dots sit on the sub-pixel positions
            cv2.circle(canvas, (int(round(x * 16)), int(round(y * 16))), radius * 16, (0, 0, 255), -1, cv2.LINE_AA, 4)
    return canvas


def unique_name(path: Path, used: set[str]) -> str:
    """``NAME.jpg`` for the annotated copy, with ``_2``, ``_3`` ... when two inputs share a name."""
    stem, n = path.stem, 1
    name = f"{stem}.jpg"
    while name in used:
        n += 1
        name = f"{stem}_{n}.jpg"
    used.add(name)
    return name


def landmark_boxes(detector, boxes: np.ndarray) -> np.ndarray:
    """The boxes to crop around: a detector's box differs from the landmark box the model was trained on,
    so detectors that know the mapping (``to_landmark_box``) apply it; the score column is kept."""
    if not hasattr(detector, "to_landmark_box") or len(boxes) == 0:
        return boxes
    mapped = np.stack([np.asarray(detector.to_landmark_box(box), dtype=np.float32) for box in boxes])
    return np.concatenate([mapped, boxes[:, 4:5]], axis=1)


def predict_images(
    paths: list[Path], predictor, detector, out_dir: Path | None, progress: bool = False
) -> tuple[list[dict[str, Any]], int]:
    """Detect + predict every image; returns (results, images skipped).

    ``detector.detect(bgr)`` returns (N, >= 5) rows x_min, y_min, x_max, y_max, score[, detector-specific
    columns]; the JSON keeps the detector's box and score. ``out_dir=None`` writes no annotated images.
    """
    from landmark.files import write_atomic

    results: list[dict[str, Any]] = []
    skipped = 0
    used: set[str] = set()
    for path in progress_bar(paths, desc="predicting", disable=not progress, unit="img"):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"landmark predict: warning: {path}: cannot read image, skipped", file=sys.stderr)
            skipped += 1
            continue
        boxes = as_detections(detector.detect(image))
        prediction = predictor.predict(image, landmark_boxes(detector, boxes), with_pose=True)
        faces = [
            {
                "box": [round(float(v), 2) for v in box[:4]],
                "score": round(float(box[4]), 4),
                "landmarks": np.round(points.astype(np.float64), 2).tolist(),
                "pose_deg": np.round(np.degrees(pose.astype(np.float64)), 2).tolist(),
            }
            for box, points, pose in zip(boxes, prediction.landmarks, prediction.pose, strict=True)
        ]
        entry = {"image": str(path), "width": image.shape[1], "height": image.shape[0], "faces": faces}
        if out_dir is not None:
            name = unique_name(path, used)
            ok, encoded = cv2.imencode(".jpg", annotate(image, faces), [cv2.IMWRITE_JPEG_QUALITY, 92])
            if not ok:
                raise LandmarkError(f"{out_dir / name}: could not encode the annotated image")
            write_atomic(out_dir / name, encoded.tobytes())
            entry["annotated"] = str(out_dir / name)
        results.append(entry)
    return results, skipped


def check_outputs(out: Path, json_path: str | None, paths: list[Path]) -> None:
    """Refuse outputs that would land on the inputs: an --out folder holding input images (an annotated
    NAME.jpg replaces a photo NAME.jpg, and the next run reads the copies as photos) or a --json image."""
    from landmark.files import check_writable, same_path

    for path in paths:
        if same_path(path.parent, out):
            raise LandmarkError(
                f"--out {out}: holds the input image {path} (annotated copies would overwrite or mix with the "
                "photos); choose another --out"
            )
        if json_path not in (None, "-") and same_path(json_path, path):
            raise LandmarkError(f"--json {json_path}: is an input image; choose another file")
    check_writable(out, "--out", folder=True)
    if json_path not in (None, "-"):
        check_writable(json_path, "--json")


def run(args: argparse.Namespace) -> int:
    from landmark.commands.output import write_json
    from landmark.files import make_folder
    from landmark.inference.predictor import LandmarkPredictor

    paths = image_paths(args.inputs)
    check_outputs(args.out, args.json, paths)
    model_path = args.model or default_model_path()
    predictor = LandmarkPredictor.from_path(model_path, threads=args.threads, flip_test=args.flip_test)
    detector = build_detector(args.detector, args.detector_model, photos=True)
    make_folder(args.out, "--out")
    try:
        results, skipped = predict_images(
            paths, predictor, detector, args.out, progress=len(paths) > PROGRESS_MIN_IMAGES
        )
    finally:
        close_detector(detector)
    if not results:
        raise LandmarkError(f"none of the {len(paths)} images could be read")
    json_path = args.json or str(args.out / "predictions.json")
    write_json(json_path, results)
    faces = sum(len(entry["faces"]) for entry in results)
    report = sys.stderr if json_path == "-" else sys.stdout  # keep stdout pure JSON with --json -
    print(
        f"{len(results)} images, {faces} faces, {skipped} skipped (unreadable); model {model_path} "
        f"({predictor.scheme.name}); annotated images in {args.out}"
        + ("" if json_path == "-" else f"; JSON in {json_path}"),
        file=report,
    )
    return 0
