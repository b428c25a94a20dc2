"""``landmark train``: train a PFLD model from a YAML config (also under ``torchrun``)."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from landmark.commands import positive_int
from landmark.errors import LandmarkError
from landmark.files import check_writable

RUN_FILES = ("last.pt", "best.pt", "metrics.csv")  # what a run folder holds once training has started


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("train", help="train a landmark model from a YAML config")
    parser.add_argument("--config", type=Path, required=True, help="training YAML, e.g. configs/train/300w_68.yaml")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set data.root=DIR --set train.epochs=5 (repeatable)",
    )
    parser.add_argument("--out", type=Path, help="run folder (default: runs/<config name>-<time>)")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR from last.pt")
    parser.add_argument(
        "--stop-after",
        type=positive_int,
        metavar="EPOCH",
        help="stop after this epoch, keeping the schedule (continue later with --resume)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs one line per epoch)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # torch and albumentations load only when training, not for every use of the CLI
    from landmark.train.config import resolve_train_config
    from landmark.train.trainer import train

    cfg = resolve_train_config(args.config, args.overrides)
    out_dir = args.out or args.resume
    if out_dir is None:
        out_dir = Path("runs") / f"{args.config.stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    label = "--out" if args.out or not args.resume else "--resume"
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if held and args.resume is None:  # a new run would replace that run's checkpoints and metrics
        raise LandmarkError(
            f"--out {out_dir}: already holds a run ({held[0]}); continue it with --resume {out_dir} "
            "or choose another --out"
        )
    check_writable(out_dir, label, folder=True)  # now, not after the first epoch
    result = train(cfg, out_dir, resume=args.resume, progress=not args.no_progress, stop_after=args.stop_after)
    if int(os.environ.get("RANK", 0)) == 0:
        history = result["history"]
        first, last = history[0], history[-1]
        print(
            f"validation NME {first['nme_mean']:.4f} (epoch {first['epoch']}) -> {last['nme_mean']:.4f} "
            f"(epoch {last['epoch']}); best {result['best_nme']:.4f}"
        )
        print(f"run folder: {out_dir}  (best.pt, last.pt, metrics.csv, config.yaml, tensorboard/)")
    return 0
