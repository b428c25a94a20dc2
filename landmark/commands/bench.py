"""``landmark bench``: input pipeline, training, inference and end-to-end demo speed on this machine, and our
detectors, demo and model beside their peers (``--detectors``, ``--peers``)."""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from landmark.commands import positive_int
from landmark.commands.output import write_json
from landmark.config import shared_data_dir
from landmark.errors import LandmarkError
from landmark.files import check_writable
from landmark.progress import progress_bar

if TYPE_CHECKING:
    import numpy as np

DLIB_ROUNDS = 5  # alternating rounds of ours and dlib in `--dlib`, and of ours and the peers per face in `--peers`
DEMO_SECONDS = 20  # the rendered 640x480 driver video of `--demo` and `--peers`: 600 frames
DETECTOR_SECONDS = 2  # `--detectors` times each detector on this much of that video: 60 frames
OPTIONAL = ("dlib", "detectors", "peers")  # sections that run only when asked for (minutes, or extra packages)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure data, training, inference and demo speed")
    parser.add_argument("--data", action="store_true", help="input pipeline samples/s with 0, 1, 2 workers")
    parser.add_argument("--train", action="store_true", help="training images/s (batch 64) and data-wait share")
    parser.add_argument("--infer", action="store_true", help="per-face latency p50/p90, throughput, sizes")
    parser.add_argument("--demo", action="store_true", help="headless end-to-end demo FPS on a 640x480 video")
    parser.add_argument(
        "--dlib",
        nargs="?",
        const="",
        metavar="MODEL.dat",
        help="time dlib's shape predictor (default: face_recognition_models' 68-point model) beside our model "
        "(--checkpoint, or the package default) in alternating rounds, and report the ratio",
    )
    parser.add_argument(
        "--detectors",
        action="store_true",
        help="each face detector's ms per 640x480 frame, share of the 300-W faces found, and found / false alarms "
        "on dlib's example group photos",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="our demo FPS beside MediaPipe's Face Landmarker, and per-face ms of ours, dlib's predictor and "
        "MediaPipe's, with the ratios (dlib's model: face_recognition_models', or --dlib FILE, which also runs --dlib)",
    )
    parser.add_argument(
        "--mediapipe-model",
        type=Path,
        metavar="FILE",
        help="MediaPipe Face Landmarker for --peers (default: ../shared/models/face_landmarker.task)",
    )
    parser.add_argument(
        "--blazeface-model",
        type=Path,
        metavar="FILE",
        help="BlazeFace model for --detectors, a .tflite or a Face Landmarker .task bundle (default: "
        "../shared/models/face_landmarker.task, whose face_detector.tflite is BlazeFace short range)",
    )
    parser.add_argument(
        "--faces-limit",
        type=positive_int,
        metavar="N",
        help="--detectors: only the first N of the 300-W faces, for a quick look",
    )
    parser.add_argument(
        "--model",
        type=Path,
        help="model for --demo, --peers and --dlib (.onnx/.pt; default: the package default)",
    )
    parser.add_argument(
        "--checkpoint",
        type=Path,
        help="for --infer: time this .pt checkpoint instead of the standard PFLD bodies; "
        "for --dlib: instead of the default model",
    )
    parser.add_argument("--runs", type=positive_int, default=200, help="timed calls per latency figure (default 200)")
    parser.add_argument("--json", metavar="PATH", help="write all results as JSON ('-' for standard output)")
    parser.set_defaults(run=run)


def _say(args: argparse.Namespace, text: str) -> None:
    if args.json != "-":
        print(text, flush=True)


def _synthetic(folder: Path, n: int = 200) -> Path:
    from landmark.data.synthetic import write_synthetic_wflw

    write_synthetic_wflw(folder, n=n, seed=0)
    return folder


def bench_data(args: argparse.Namespace, workdir: Path) -> list[dict]:
    from landmark.bench.train import benchmark_data
    from landmark.data.augment import load_augment_config
    from landmark.data.dataset import LandmarkDataset
    from landmark.data.readers import read_300w, read_wflw
    from landmark.data.schemes import IBUG_68, WFLW_98

    strong = load_augment_config("strong")
    datasets = {
        "synthetic WFLW (256 px)": LandmarkDataset(
            read_wflw(_synthetic(workdir / "syn"), "train"), WFLW_98, augment=strong, box_jitter=0.1
        )
    }
    faces300w = shared_data_dir() / "faces300w" / "train"
    if faces300w.is_dir():
        datasets["300-W real (<= 320 px)"] = LandmarkDataset(
            read_300w(faces300w), IBUG_68, augment=strong, box_jitter=0.1
        )
    rows = benchmark_data(datasets)
    _say(args, f"{'data':<26} {'workers':>7} {'samples/s':>10}")
    for row in rows:
        _say(args, f"{row['data']:<26} {row['workers']:>7} {row['samples_per_s']:>10.0f}")
    return rows


def bench_train(args: argparse.Namespace, workdir: Path) -> list[dict]:
    from landmark.bench.train import benchmark_training
    from landmark.data.readers import read_300w

    faces300w = shared_data_dir() / "faces300w" / "train"
    records = read_300w(faces300w) if faces300w.is_dir() else None
    rows = benchmark_training(records, num_points=68)
    _say(args, f"{'model':<16} {'compute img/s':>13} {'with data img/s':>16} {'waiting for data':>17}")
    for row in rows:
        wait = f"{100 * row['data_wait_share']:.0f}%" if "data_wait_share" in row else "-"
        _say(
            args, f"{row['model']:<16} {row['compute_images_per_s']:>13} {row.get('images_per_s', '-'):>16} {wait:>17}"
        )
    return rows


def bench_infer(args: argparse.Namespace, workdir: Path) -> list[dict]:
    from landmark.bench.infer import benchmark_default_models, benchmark_inference, format_table

    if args.checkpoint is not None and args.checkpoint.suffix != ".pt":
        raise LandmarkError(f"--checkpoint: expected a .pt checkpoint (--infer exports it), got {args.checkpoint}")
    if args.checkpoint is not None:
        results = [benchmark_inference(args.checkpoint, runs=args.runs)]
    else:
        results = benchmark_default_models(runs=args.runs)
    _say(args, format_table(results))
    return results


def bench_demo(args: argparse.Namespace, workdir: Path) -> dict:
    from landmark.config import default_model_path
    from landmark.data.synthetic_video import render_driver_video
    from landmark.demo_app import benchmark_demo
    from landmark.eyes.model import EyeStateModel
    from landmark.inference.predictor import LandmarkPredictor

    model = args.model or default_model_path()
    video = workdir / "driver.mp4"
    render_driver_video(video, workdir / "driver.json", seconds=DEMO_SECONDS, seed=3, size=(640, 480))
    predictor = LandmarkPredictor.from_path(model, threads=1)
    # the demo's default pipeline, eye-state model included
    summary = benchmark_demo(video, predictor, workdir=workdir, eye_model=EyeStateModel.from_path())
    stages = "  ".join(f"{name} {ms:.2f}" for name, ms in summary["stage_ms"].items())
    _say(
        args,
        f"demo: {summary['frames']} frames of 640x480 at {summary['fps']:.0f} FPS end to end "
        f"(model {model}, tracking on, {summary['detect_calls']} detector calls)",
    )
    _say(args, f"  ms per frame: {stages}")
    return {"model": str(model), **summary}


def bench_dlib(args: argparse.Namespace, workdir: Path) -> dict:
    from landmark.bench.infer import benchmark_against_dlib
    from landmark.config import default_model_path
    from landmark.data.crop import face_box_from_points
    from landmark.data.dataset import load_image
    from landmark.data.readers import read_300w
    from landmark.inference.export import export_checkpoint

    if args.checkpoint is not None:
        onnx_path = workdir / "model.onnx"
        export_checkpoint(args.checkpoint, onnx_path)
    elif args.model is not None:  # e.g. an INT8 export: timed as the file it is
        onnx_path = _peers_model(args, workdir)
    else:
        onnx_path = default_model_path((".onnx",))
    face = None
    faces300w = shared_data_dir() / "faces300w" / "train"
    if faces300w.is_dir():  # a real face for dlib, though a tree ensemble's time does not depend on it
        record = read_300w(faces300w)[0]
        face = (load_image(record.image_path), face_box_from_points(record.points))
    _say(args, f"timing {onnx_path.name} (ONNX Runtime, 1 thread) and dlib's predictor, {DLIB_ROUNDS} rounds each")
    result = benchmark_against_dlib(onnx_path, args.dlib or None, face=face, rounds=DLIB_ROUNDS, runs=args.runs)
    for i, row in enumerate(result["rounds"], 1):
        _say(args, f"  round {i}: ours {row['ours_p50_ms']:.3f} ms, dlib {row['dlib_p50_ms']:.3f} ms (p50)")
    _say(
        args,
        f"per face, median of the rounds: ours {result['ours_p50_ms']:.3f} ms, dlib {result['dlib_p50_ms']:.3f} ms, "
        f"ours / dlib = {result['ratio']:.2f}",
    )
    return result


def _shared_model(file_name: str) -> Path:
    """A model file in the shared folder beside the shared data (``../shared/models``)."""
    return shared_data_dir().parent / "models" / file_name


def _progress(items: Iterable, description: str) -> Iterable:
    return progress_bar(items, desc=description, unit="image")


def _percent(found: int, total: int) -> str:
    return f"{found:,}/{total:,} {100 * found / total:5.1f}%"


def bench_detectors(args: argparse.Namespace, workdir: Path) -> list[dict]:
    from landmark.bench.detectors import MIN_IOU, benchmark_detectors
    from landmark.bench.frames import read_video_frames
    from landmark.data.readers import read_300w, read_dlib_xml
    from landmark.data.synthetic_video import render_driver_video

    video = workdir / "detectors.mp4"
    render_driver_video(video, workdir / "detectors.json", seconds=DETECTOR_SECONDS, seed=3, size=(640, 480))
    frames, _ = read_video_frames(video)
    faces300w_dir = shared_data_dir() / "faces300w" / "train"
    faces300w = read_300w(faces300w_dir)[: args.faces_limit] if faces300w_dir.is_dir() else []
    examples_dir = shared_data_dir() / "real_faces" / "dlib_examples_faces"
    examples = [
        record
        for name in ("training_with_face_landmarks.xml", "testing_with_face_landmarks.xml")
        if (examples_dir / name).is_file()
        for record in read_dlib_xml(examples_dir / name)
    ]
    # The bundle, not the shared blaze_face_short_range.tflite: that copy is damaged (a binary once saved as
    # text: 84,558 U+FFFD sequences), and the bundle's face_detector.tflite is the same BlazeFace short range.
    models = {"mediapipe": args.blazeface_model or _shared_model("face_landmarker.task")}
    _say(
        args,
        f"video: {len(frames)} frames of the 640x480 driver video, real-time settings; faces: still-photo settings, "
        f"found = the detector's landmark-box estimate has IoU >= {MIN_IOU} with the annotated landmark box",
    )
    rows = benchmark_detectors(frames, faces300w, examples, models, progress=_progress)
    _say(
        args,
        f"{'detector':<10} {'p50 ms':>7} {'p90 ms':>7}  {'300-W faces found':>19}  {'dlib photos found':>19}  "
        f"{'false alarms':>12}",
    )
    for row in rows:
        if not row["available"]:
            _say(args, f"{row['detector']:<10} unavailable: {row['reason']}")
            continue
        video_ms, faces, photos = row["video"], row["faces300w"], row["dlib_examples"]
        share = _percent(faces["found"], faces["faces"]) if faces else "-"
        found = _percent(photos["found"], photos["faces"]) if photos else "-"
        alarms = photos["false_alarms"] if photos else "-"
        _say(
            args,
            f"{row['detector']:<10} {video_ms['median_ms']:>7.2f} {video_ms['p90_ms']:>7.2f}  {share:>19}  "
            f"{found:>19}  {alarms:>12}",
        )
    return rows


def _peers_model(args: argparse.Namespace, workdir: Path) -> Path:
    """The ONNX model that --peers times: --model (a checkpoint is exported first), else the package default."""
    from landmark.demo_app import check_model_path

    model = check_model_path(args.model)
    if model.suffix.lower() == ".onnx":
        return model
    from landmark.inference.export import export_checkpoint

    onnx_path = workdir / "peers_model.onnx"
    export_checkpoint(model, onnx_path)
    return onnx_path


def _driver_face(timeline_path: Path, frames: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(frame, landmark box) of the first frame of the rendered driver video whose face is in view."""
    import json

    import numpy as np

    from landmark.data.crop import face_box_from_points

    truth = json.loads(timeline_path.read_text())["frames_truth"]
    index = next(i for i, frame in enumerate(truth) if frame["points"] is not None)
    return frames[index], face_box_from_points(np.asarray(truth[index]["points"], np.float32))


def _ms(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def bench_peers(args: argparse.Namespace, workdir: Path) -> dict:
    from landmark.bench.frames import read_video_frames
    from landmark.bench.peers import DEMO_ROUNDS, benchmark_demo_peers, benchmark_face_peers, peer_ratios
    from landmark.data.synthetic_video import render_driver_video
    from landmark.detect import DEFAULT_DETECTOR, build_detector
    from landmark.eyes.model import EyeStateModel
    from landmark.inference.predictor import LandmarkPredictor

    onnx_path = _peers_model(args, workdir)
    mediapipe_model = args.mediapipe_model or _shared_model("face_landmarker.task")
    video = workdir / "peers.mp4"
    render_driver_video(video, workdir / "peers.json", seconds=DEMO_SECONDS, seed=3, size=(640, 480))
    frames, fps = read_video_frames(video)  # all in memory first: decoding is timed for neither side
    predictor = LandmarkPredictor.from_path(onnx_path, threads=1)
    detector = build_detector(DEFAULT_DETECTOR)  # by name: an error, not a fallback, when it cannot load
    _say(args, f"demo: {len(frames)} frames of 640x480 in memory, {DEMO_ROUNDS} alternating rounds (median)")
    eye_model = EyeStateModel.from_path()  # the demo's default pipeline, eye-state model included
    demo = benchmark_demo_peers(video, frames, fps, predictor, detector, mediapipe_model, eye_model=eye_model)
    image, box = _driver_face(workdir / "peers.json", frames)
    _say(args, f"per face: one face of that video, {DLIB_ROUNDS} alternating rounds of {args.runs} calls (median p50)")
    face = benchmark_face_peers(onnx_path, image, box, args.dlib or None, mediapipe_model, DLIB_ROUNDS, args.runs)
    result = {
        "model": str(onnx_path),
        "detector": DEFAULT_DETECTOR,
        "mediapipe_model": str(mediapipe_model),
        "demo_fps": {"ours": demo["ours"]["fps"], "mediapipe": (demo["mediapipe"] or {}).get("fps")},
        "face_ms": face["face_ms"],
        "ratios": peer_ratios(demo, face),
        "missing": {**demo["missing"], **face["missing"]},
        "demo": {name: demo[name] for name in ("ours", "mediapipe")},
        "face_rounds": face["rounds"],
    }
    _print_peers(args, result)
    return result


def _print_peers(args: argparse.Namespace, result: dict) -> None:
    demo, fps, ms, ratios = result["demo"], result["demo_fps"], result["face_ms"], result["ratios"]
    ours_cpu = demo["ours"]["cpu_ms_per_frame"]
    theirs_cpu = demo["mediapipe"]["cpu_ms_per_frame"] if demo["mediapipe"] else None
    stages = "  ".join(f"{name} {value:.2f}" for name, value in demo["ours"]["stage_ms"].items() if value >= 0.005)
    rows = [
        ("demo FPS", "", ""),
        (f"  ours ({result['detector']}, tracking, landmarks, pose, DMS)", _ms(fps["ours"], 1), _ms(ours_cpu, 2)),
        ("  MediaPipe Face Landmarker, VIDEO mode", _ms(fps["mediapipe"], 1), _ms(theirs_cpu, 2)),
        ("per face ms (p50)", "", ""),
        ("  ours: model call (ONNX Runtime, 1 thread)", _ms(ms["ours"]), ""),
        ("  ours: crop + model + points", _ms(ms["ours_with_crop"]), ""),
        ("  dlib 68-point predictor", _ms(ms["dlib"]), ""),
        ("  MediaPipe: one tracked VIDEO-mode call", _ms(ms["mediapipe"]), ""),
    ]
    _say(args, f"{'':<56} {'FPS / ms':>9} {'CPU ms/frame':>13}")
    for label, value, cpu in rows:
        _say(args, f"{label:<56} {value:>9} {cpu:>13}")
    _say(args, f"  ours ms per frame by stage: {stages}")
    _say(
        args,
        f"ratios: FPS ours / MediaPipe {_ms(ratios['fps_ours_over_mediapipe'], 2)} (target >= 1.5); per face ms "
        f"ours / dlib {_ms(ratios['face_ms_ours_over_dlib'], 2)}, ours with crop / MediaPipe "
        f"{_ms(ratios['face_ms_ours_with_crop_over_mediapipe'], 2)}",
    )
    for name, reason in result["missing"].items():
        _say(args, f"  {name}: not measured: {reason}")


SECTIONS = {
    "data": bench_data,
    "train": bench_train,
    "infer": bench_infer,
    "demo": bench_demo,
    "dlib": bench_dlib,
    "detectors": bench_detectors,
    "peers": bench_peers,
}


def run(args: argparse.Namespace) -> int:
    if args.json and args.json != "-":
        check_writable(args.json, "--json")  # now, not after minutes of benchmarks
    sections = [name for name in SECTIONS if getattr(args, name) not in (None, False)]
    sections = sections or [name for name in SECTIONS if name not in OPTIONAL]
    results = {}
    with tempfile.TemporaryDirectory() as temp:
        for name in sections:
            _say(args, f"== {name}")
            results[name] = SECTIONS[name](args, Path(temp))
    if args.json:
        write_json(args.json, results)
    return 0
