"""`natbench compare BASE... NEW`: arguments and exit codes (0 no regression, 1 regression, 2 nothing comparable)."""

from __future__ import annotations

import argparse
import sys

from natbench.compare.model import ALPHA, METRICS, NORMALIZE, THRESHOLD
from natbench.compare.run import compare
from natbench.compare.text import show


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "base",
        nargs="+",
        help="baseline results directory; several (oldest first) pool their runs, so that the baseline's "
        "between-run noise is measured",
    )
    parser.add_argument("new", help="results directory to check against the baseline")
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help="relative change that counts when the test also finds it (default 0.05 = 5%%)",
    )
    parser.add_argument("--metric", choices=tuple(METRICS), default="latency", help="what to compare")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only cases whose id matches this glob, or whose id/parameters contain this text (repeatable)",
    )
    parser.add_argument("--alpha", type=float, default=ALPHA, help="one-sided test level (default 0.05)")
    parser.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="auto",
        help="auto: judge latency relative to the sentinel timed between the timed blocks where both rows "
        "carry it, else as calibrations (default); calibrations: divide NEW's times by the machine's drift "
        "when the calibration workloads changed significantly, over all processes or in a case's own; "
        "off: judge raw times",
    )
    parser.add_argument(
        "--per-case",
        action="store_true",
        help="judge each case on its own test, without the bar the runs' scatter and the number of cases set "
        "(about alpha x cases unchanged cases then flag by chance)",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def main(args: argparse.Namespace) -> int:
    """0: no regression; 1: regression(s); 2: bad input or nothing comparable (reasons printed)."""
    try:
        result = compare(
            args.base,
            args.new,
            args.threshold,
            args.metric,
            args.filter,
            getattr(args, "alpha", ALPHA),
            getattr(args, "normalize", "auto"),
            getattr(args, "per_case", False),
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"natbench compare: {exc}", file=sys.stderr)
        return 2
    show(result, args.json)
    if result.exit_code == 2:
        print("natbench compare: no case could be compared (reasons above)", file=sys.stderr)
    return result.exit_code
