"""``landmark make-synthetic``: rendered faces with exact labels, as a WFLW-layout dataset or a driver video.

landmark make-synthetic --out DIR --n N --seed S [--test-fraction F] [--size PX]
landmark make-synthetic --video OUT.mp4 --timeline OUT.json --seconds S --seed K [--fps 30]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from landmark.errors import LandmarkError
from landmark.files import check_writable, same_path
from landmark.progress import progress_bar


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "make-synthetic",
        help="render synthetic faces (WFLW layout) or a synthetic driver video with its true timeline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    images = parser.add_argument_group("image dataset")
    images.add_argument("--out", type=Path, help="dataset folder to write (WFLW_images/, WFLW_annotations/)")
    images.add_argument("--n", type=int, help="number of faces")
    images.add_argument("--test-fraction", type=float, default=0.2, help="share of faces in the test list (0.2)")
    images.add_argument("--size", type=int, default=256, help="image side in pixels (256)")
    video = parser.add_argument_group("driver video")
    video.add_argument("--video", type=Path, help="MP4 to write")
    video.add_argument("--timeline", type=Path, help="timeline JSON to write (events + per-frame truth)")
    video.add_argument("--seconds", type=float, default=60.0, help="video length (60)")
    video.add_argument("--fps", type=int, default=30, help="frames per second (30)")
    video.add_argument("--width", type=int, default=640, help="frame width (640)")
    video.add_argument("--height", type=int, default=480, help="frame height (480)")
    parser.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same files (0)")
    parser.set_defaults(run=run)


def _check_args(args: argparse.Namespace) -> str:
    """Which mode the flags ask for ("images" or "video"); raise a one-line LandmarkError if they don't fit."""
    wants_images = args.out is not None or args.n is not None
    wants_video = args.video is not None or args.timeline is not None
    if wants_images == wants_video:
        raise LandmarkError("give either --out DIR --n N (image dataset) or --video OUT.mp4 --timeline OUT.json")
    if args.seed < 0:
        raise LandmarkError(f"--seed must be >= 0, got {args.seed}")
    if wants_images:
        if args.out is None or args.n is None:
            raise LandmarkError("the image dataset needs both --out DIR and --n N")
        if args.n <= 0:
            raise LandmarkError(f"--n must be > 0, got {args.n}")
        if not 0.0 <= args.test_fraction < 1.0:
            raise LandmarkError(f"--test-fraction must be in [0, 1), got {args.test_fraction}")
        if args.size < 64:
            raise LandmarkError(f"--size must be >= 64 pixels, got {args.size}")
        check_writable(args.out, "--out", folder=True)
        if args.out.is_dir() and any(args.out.iterdir()):  # new lists would orphan the old images, or mix with them
            raise LandmarkError(f"--out {args.out}: already holds files; choose another --out or delete it first")
        return "images"
    if args.video is None or args.timeline is None:
        raise LandmarkError("a driver video needs both --video OUT.mp4 and --timeline OUT.json")
    if args.video.suffix.lower() != ".mp4":
        raise LandmarkError(f"--video {args.video}: expected a .mp4 file name")
    if args.seconds <= 0:
        raise LandmarkError(f"--seconds must be > 0, got {args.seconds}")
    if not 1 <= args.fps <= 240:
        raise LandmarkError(f"--fps must be in 1..240, got {args.fps}")
    if args.width < 160 or args.height < 120:
        raise LandmarkError(f"--width/--height must be at least 160x120, got {args.width}x{args.height}")
    for flag, path in (("--video", args.video), ("--timeline", args.timeline)):
        if not path.parent.is_dir():
            raise LandmarkError(f"{flag} {path}: folder {path.parent} does not exist")
    if same_path(args.video, args.timeline):
        raise LandmarkError(f"--timeline {args.timeline}: is also the --video file; give each its own path")
    return "video"


def run(args: argparse.Namespace) -> int:
    mode = _check_args(args)
    if mode == "images":
        from landmark.data.synthetic import write_synthetic_wflw

        with progress_bar(total=args.n, desc="rendering faces", unit="img", leave=True) as bar:
            summary = write_synthetic_wflw(
                args.out, args.n, args.seed, test_fraction=args.test_fraction, size=args.size, progress=bar.update
            )
        flags = ", ".join(f"{name} {count}" for name, count in summary["attributes"].items())
        print(f"wrote {summary['images']} faces ({summary['train']} train, {summary['test']} test) to {args.out}")
        print(f"  lists: {summary['train_list']}\n         {summary['test_list']}")
        print(f"  contact sheet: {summary['contact_sheet']}")
        print(f"  attribute counts: {flags}")
        return 0

    from landmark.data.synthetic_video import render_driver_video

    frames = int(round(args.seconds * args.fps))
    with progress_bar(total=frames, desc="rendering video", unit="frame", leave=True) as bar:
        summary = render_driver_video(
            args.video,
            args.timeline,
            args.seconds,
            args.seed,
            fps=args.fps,
            size=(args.width, args.height),
            progress=bar.update,
        )
    counts = {}
    for event in summary["events"]:
        counts[event["type"]] = counts.get(event["type"], 0) + 1
    events = ", ".join(f"{kind} {count}" for kind, count in counts.items()) or "none"
    shape = f"{summary['width']}x{summary['height']} @ {summary['fps']} fps"
    print(f"wrote {summary['frames']} frames ({shape}) to {args.video}")
    print(f"  timeline: {args.timeline}")
    print(f"  events: {events}")
    return 0
