"""``landmark bench``: input pipeline, training, inference and end-to-end demo speed on this machine."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from landmark.commands import positive_int
from landmark.commands.output import write_json
from landmark.config import shared_data_dir
from landmark.errors import LandmarkError
from landmark.files import check_writable

DLIB_ROUNDS = 5  # alternating rounds of ours and dlib in `--dlib`


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
    parser.add_argument("--model", type=Path, help="model for --demo (.onnx/.pt; default: the package default)")
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
    from landmark.inference.predictor import LandmarkPredictor

    model = args.model or default_model_path()
    video = workdir / "driver.mp4"
    render_driver_video(video, workdir / "driver.json", seconds=20, seed=3, size=(640, 480))
    predictor = LandmarkPredictor.from_path(model, threads=1)
    summary = benchmark_demo(video, predictor, workdir=workdir)
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


SECTIONS = {"data": bench_data, "train": bench_train, "infer": bench_infer, "demo": bench_demo, "dlib": bench_dlib}


def run(args: argparse.Namespace) -> int:
    if args.json and args.json != "-":
        check_writable(args.json, "--json")  # now, not after minutes of benchmarks
    sections = [name for name in SECTIONS if getattr(args, name) not in (None, False)]
    sections = sections or [name for name in SECTIONS if name != "dlib"]  # dlib is optional: only when asked
    results = {}
    with tempfile.TemporaryDirectory() as temp:
        for name in sections:
            _say(args, f"== {name}")
            results[name] = SECTIONS[name](args, Path(temp))
    if args.json:
        write_json(args.json, results)
    return 0
