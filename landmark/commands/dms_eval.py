"""`landmark dms-eval`: score the driver monitor's events against a synthetic video's true timeline.

Either from a monitor log written while running on the rendered video (--log), or by feeding the
timeline's true landmarks through the monitor (--truth-points), which scores the DMS logic alone.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from landmark.commands import non_negative_float
from landmark.commands.output import write_json
from landmark.dms.config import load_dms_config
from landmark.dms.evaluate import (
    check_log_covers,
    events_from_log,
    load_log,
    load_timeline,
    run_monitor_on_truth,
    score_events,
    truth_events,
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "dms-eval",
        help="score driver-monitoring events against a timeline's ground truth",
        description=__doc__,
    )
    parser.add_argument("--timeline", required=True, type=Path, help="timeline JSON from the renderer")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--log", type=Path, help="monitor JSONL log (one FrameState.to_log per line)")
    source.add_argument(
        "--truth-points", action="store_true", help="run the monitor on the timeline's true landmarks and poses"
    )
    parser.add_argument(
        "--config",
        type=Path,
        default=None,
        help="DMS config YAML for --truth-points (default: built-in = configs/dms.yaml)",
    )
    parser.add_argument(
        "--tolerance",
        type=non_negative_float,
        default=0.5,
        help="seconds by which intervals may miss each other and still match (default 0.5)",
    )
    parser.add_argument("--json", dest="json_out", default=None, help="write the scores as JSON ('-' = stdout)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    timeline = load_timeline(args.timeline)
    if args.truth_points:
        lines = run_monitor_on_truth(timeline, load_dms_config(args.config))
        source = "truth-points"
    else:
        lines = load_log(args.log)
        check_log_covers(lines, timeline, args.log, args.timeline)
        source = str(args.log)
    scores = score_events(events_from_log(lines), truth_events(timeline, args.timeline), args.tolerance)

    # With JSON on stdout the table goes to stderr, so the JSON stays machine-readable.
    table_out = sys.stderr if args.json_out == "-" else sys.stdout
    print(f"timeline {args.timeline} | detections from {source} | tolerance {args.tolerance:g} s", file=table_out)
    print(format_table(scores), file=table_out)

    if args.json_out is not None:
        report = {"timeline": str(args.timeline), "source": source, "tolerance_s": args.tolerance, "scores": scores}
        write_json(args.json_out, report)
    return 0


def format_table(scores: dict) -> str:
    """A fixed-width table: one row per event type, "-" for undefined values."""

    def num(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    header = (
        f"{'event':<14}{'truth':>6}{'det':>6}{'TP':>5}{'prec':>7}{'recall':>8}{'F1':>7}{'onset s':>9}{'alert s':>9}"
    )
    rows = [header, "-" * len(header)]
    for kind, s in scores.items():
        rows.append(
            f"{kind:<14}{s['truth']:>6}{s['detected']:>6}{s['tp']:>5}{num(s['precision'], '.3f'):>7}"
            f"{num(s['recall'], '.3f'):>8}{num(s['f1'], '.3f'):>7}{num(s['onset_latency_s'], '+.3f'):>9}"
            f"{num(s['alert_delay_s'], '+.3f'):>9}"
        )
    return "\n".join(rows)
