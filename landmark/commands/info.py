"""``landmark info``: parameters, FLOPs, size and stage shapes of a model config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark.commands.output import write_json
from landmark.config import CONFIG_DIR

DEFAULT_CONFIG = CONFIG_DIR / "models" / "pfld.yaml"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("info", help="summarise a model config (params, MFLOPs, size, shapes)")
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="model YAML (default: %(default)s)")
    parser.add_argument("--width", type=float, help="override the width multiplier (e.g. 0.25)")
    parser.add_argument("--num-points", type=int, help="override the number of landmarks (98 or 68)")
    parser.add_argument("--input-size", type=int, help="override the input size (default from the config)")
    parser.add_argument("--json", metavar="PATH", help="also write the summary as JSON ('-' for stdout only)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # torch loads only for this command, not for every use of the CLI (the parsers are built for all commands)
    from landmark.models.pfld import build_pfld, load_model_config
    from landmark.models.summary import summarise_model

    cfg = load_model_config(args.config, num_points=args.num_points, width=args.width, input_size=args.input_size)
    summary = {"config": str(args.config), "width": cfg["width"], **summarise_model(build_pfld(cfg))}
    if args.json == "-":  # machine-readable only, so the output parses as one JSON object
        write_json("-", summary)
        return 0
    print(
        f"{args.config}  width {cfg['width']}  {summary['num_points']} points  "
        f"input {summary['input_size']}x{summary['input_size']}"
    )
    print(f"{'stage':<44} output (C, H, W)")
    for stage in summary["stages"]:
        print(f"{stage['stage']:<44} {tuple(stage['shape'])}")
    print(f"params {summary['params']:,}   MFLOPs {summary['mflops']}   fp32 size {summary['size_mb']} MB")
    print("(the training-only auxiliary pose net is not part of the inference model and is not counted)")
    if args.json:
        write_json(args.json, summary)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0
