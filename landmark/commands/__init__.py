"""One module per ``landmark`` subcommand: ``add_parser(subparsers)`` and ``run(args) -> int``.

The argument types below turn a bad number on the command line into argparse's one-line usage error
("argument --threads: expected a positive integer, got '-1'") before any work starts.
"""

from __future__ import annotations

import argparse


def _number(text: str, kind: type, minimum: float, inclusive: bool, expected: str) -> int | float:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if value < minimum or (value == minimum and not inclusive) or value != value:  # value != value: NaN
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return int(_number(text, int, 1, True, "a positive integer"))


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return int(_number(text, int, 0, True, "an integer >= 0"))


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    return float(_number(text, float, 0.0, False, "a positive number"))


def non_negative_float(text: str) -> float:
    """argparse type: a number >= 0."""
    return float(_number(text, float, 0.0, True, "a number >= 0"))
