"""`natbench report`: a static site of figures and tables from one or more result directories."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def build_site(results, out):
    from natbench.report.site import build_site as _build

    return _build(results, out)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        nargs="+",
        required=True,
        metavar="DIR",
        help="result directories, oldest first (the last one feeds the figures; all feed history)",
    )
    parser.add_argument("--out", required=True, metavar="SITE", help="directory to write the site into")
    parser.add_argument(
        "--check",
        action="store_true",
        help="open every page in headless Chromium: images load and no link is broken",
    )


def main(args: argparse.Namespace) -> int:
    try:
        index = build_site(args.results, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"natbench report: {exc}", file=sys.stderr)
        return 2
    print(f"report: {Path(index).resolve()}")
    if args.check:
        from natbench.report.check import ChromiumUnavailable, check_site

        try:
            problems = check_site(args.out)
        except ChromiumUnavailable as exc:
            print(f"natbench report --check: {exc}", file=sys.stderr)
            return 2
        for p in problems:
            print(f"broken: {p}", file=sys.stderr)
        if problems:
            return 1
        print("check: every page loaded, every image has a size, every link resolves")
    return 0
