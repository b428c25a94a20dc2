"""``landmark demo``: the real-time driver-monitoring demo on a camera, a video file or an image folder.

With a display it opens a window (q quit, space pause, s screenshot, r reset statistics). Without one --
no DISPLAY, an OpenCV build without GUI, or ``--headless`` -- it runs the same pipeline and writes the
annotated video and a JSONL log (one line per frame) instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark.commands import non_negative_float, positive_float, positive_int
from landmark.demo_app import Window, check_model_path, display_problem, run_pipeline
from landmark.detect import DETECTORS, build_detector, close_detector
from landmark.dms import load_dms_config
from landmark.errors import LandmarkError
from landmark.files import check_writable, same_path
from landmark.tracking import TrackerConfig
from landmark.video import source_kind

HEADLESS_VIDEO = Path("demo_output.mp4")
HEADLESS_LOG = Path("demo_output.jsonl")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="real-time landmarks + driver monitoring on a camera or video")
    parser.add_argument("--source", default="0", help="camera index, video file or image folder (default: 0)")
    parser.add_argument("--model", type=Path, help="checkpoint (.pt) or ONNX model (default: landmark/weights)")
    parser.add_argument("--backend", choices=("auto", "onnx", "torch"), default="auto", help="inference backend")
    parser.add_argument("--threads", type=positive_int, help="inference threads (default: the runtime's choice)")
    parser.add_argument(
        "--flip-test", action="store_true", help="average each face with its mirror's prediction (2x model time)"
    )
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        help="face detector (default: yunet, the shipped one; haar only when yunet cannot be loaded)",
    )
    parser.add_argument(
        "--detector-model", type=Path, help="model file of the detector (mediapipe needs one; yunet ships)"
    )
    parser.add_argument("--output", type=Path, help="write the annotated video here (MP4)")
    parser.add_argument("--log", type=Path, help="write one JSON line per frame here")
    parser.add_argument("--headless", action="store_true", help="no window, even when a display is available")
    parser.add_argument("--max-frames", type=positive_int, help="stop after this many frames")
    parser.add_argument("--dms-config", type=Path, help="driver-monitoring thresholds (default: configs/dms.yaml)")
    parser.add_argument(
        "--eye-model", type=Path, help="eye-state ONNX model fused with EAR (default: landmark/weights/eye_state.onnx)"
    )
    parser.add_argument("--no-eye-model", action="store_true", help="eye closure from EAR alone (no eye-state model)")
    parser.add_argument("--redetect-every", type=positive_int, default=10, help="run the detector every N frames (10)")
    parser.add_argument("--no-smooth", action="store_true", help="do not smooth the landmarks (One Euro filter)")
    parser.add_argument("--min-cutoff", type=positive_float, default=1.0, help="One Euro min cutoff in Hz (1.0)")
    parser.add_argument("--beta", type=non_negative_float, default=0.05, help="One Euro speed coefficient (0.05)")
    parser.add_argument("--fps", type=positive_float, help="frame rate of an image folder (default 30)")
    parser.add_argument("--reconnect", action="store_true", help="reopen a camera that stops delivering frames")
    parser.add_argument("--screenshots", type=Path, default=Path("."), help="folder for 's' screenshots")
    parser.set_defaults(run=run)


def check_outputs(source: str, output: Path | None, log: Path | None) -> None:
    """Fail now, in one line, rather than with a traceback or a lost file after the run: the video is an .mp4
    file path, and the video, the log and a source file are three different, writable files."""
    if output is not None:
        check_writable(output, "--output")
        if output.suffix.lower() != ".mp4":
            raise LandmarkError(f"--output {output}: expected a video file name ending in .mp4")
    if log is not None:
        check_writable(log, "--log")
    if output is not None and log is not None and same_path(output, log):
        raise LandmarkError(f"--log {log}: is also the --output video; give each its own path")
    for flag, path in (("--output", output), ("--log", log)):
        if path is not None and source_kind(source) == "file" and same_path(path, source):
            raise LandmarkError(f"{flag} {path}: is the --source video; write another file")


def run(args: argparse.Namespace) -> int:
    from landmark.eyes.model import EyeStateModel
    from landmark.inference.predictor import LandmarkPredictor

    source_kind(args.source)  # a mistyped path fails here, before the model loads or any output is announced
    model = check_model_path(args.model)
    dms_config = load_dms_config(args.dms_config)
    predictor = LandmarkPredictor.from_path(model, backend=args.backend, threads=args.threads, flip_test=args.flip_test)
    if args.no_eye_model and args.eye_model is not None:
        raise LandmarkError("--eye-model and --no-eye-model: give one or the other")
    eye_model = None if args.no_eye_model else EyeStateModel.from_path(args.eye_model)
    detector = build_detector(args.detector, args.detector_model)
    tracker_config = TrackerConfig(
        redetect_every=args.redetect_every, smooth=not args.no_smooth, min_cutoff=args.min_cutoff, beta=args.beta
    )

    window = None
    output, log = args.output, args.log
    problem = None if args.headless else display_problem()
    headless = args.headless or problem is not None
    if headless:
        output = output or HEADLESS_VIDEO
        log = log or HEADLESS_LOG
    check_outputs(args.source, output, log)
    if headless:
        reason = "--headless" if args.headless else f"no display available ({problem})"
        print(f"{reason}: running headless; writing {output} and {log}", file=sys.stderr)
    else:
        window = Window()

    try:
        summary = run_pipeline(
            args.source,
            predictor,
            detector,
            output=output,
            log=log,
            window=window,
            max_frames=args.max_frames,
            dms_config=dms_config,
            tracker_config=tracker_config,
            reconnect=args.reconnect,
            fps=args.fps,
            progress=window is None,
            screenshot_dir=args.screenshots,
            eye_model=eye_model,
        )
    finally:
        close_detector(detector)
    stages = "  ".join(f"{name} {ms:.2f}" for name, ms in summary["stage_ms"].items())
    print(
        f"{summary['frames']} frames in {summary['seconds']:.1f} s ({summary['fps']:.1f} FPS); "
        f"face in {summary['face_frames']}, detector runs {summary['detect_calls']}, "
        f"skipped {summary['skipped_frames']}",
        file=sys.stderr,
    )
    print(f"ms per frame: {stages}", file=sys.stderr)
    if summary["stop_reason"]:  # the camera died: the outputs are complete up to that point
        print(f"landmark demo: {summary['stop_reason']}", file=sys.stderr)
        return 1
    return 0
