"""The ``landmark`` command: one subcommand per module in ``landmark/commands``.

Errors about user input (``LandmarkError``) are printed as one line and exit with status 2; Ctrl-C exits
with 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from landmark import __version__
from landmark.commands import (
    bench,
    calibrate_detector,
    demo,
    dms_eval,
    eval_eyes,
    export,
    info,
    make_synthetic,
    predict,
    train,
    train_eyes,
)
from landmark.commands import eval as eval_command
from landmark.errors import LandmarkError

COMMANDS = [
    info,
    make_synthetic,
    train,
    eval_command,
    export,
    predict,
    demo,
    dms_eval,
    train_eyes,
    eval_eyes,
    bench,
    calibrate_detector,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landmark", description="PFLD facial landmarks for driver monitoring.")
    parser.add_argument("--version", action="version", version=f"landmark {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # INFO for our own modules only: libraries that log on the root logger (ONNX Runtime's quantizer)
    # would otherwise flood the terminal.
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("landmark").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return args.run(args)
    except LandmarkError as err:
        print(f"landmark {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"landmark {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
