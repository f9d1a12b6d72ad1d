"""`natbench reproduce`: sweep a preset, judge the papers' claims on it, and build the report, in one command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def reproduce(preset: str, out: str | Path, history: list[str | Path] = (), progress: bool = True) -> dict:
    """Run `preset` into OUT, write OUT/claims.json and OUT/site; returns paths and verdict counts."""
    from natbench.claims import VERDICTS, judge
    from natbench.report import build_site
    from natbench.results import load
    from natbench.sweep import run_sweep

    out = Path(out)
    run_sweep(preset, out, progress=progress)
    frame = load(out)
    verdicts = judge(frame)
    claims_path = out / "claims.json"
    claims_path.write_text(json.dumps([v.to_dict() for v in verdicts], indent=2) + "\n", encoding="utf-8")
    index = build_site([*history, out], out / "site")
    counts = dict.fromkeys(VERDICTS, 0)
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    failed = [v.id for v in verdicts if v.counts_for_strict]  # verified FAILs and every ERROR
    return {
        "results": str(out),
        "claims": str(claims_path),
        "report": str(index),
        "counts": counts,
        "failed": failed,
        "sweep_status": frame["status"].value_counts().to_dict(),
        "verdicts": verdicts,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset", default="cpu-quick", help="sweep preset (natbench/sweep/presets; default cpu-quick)"
    )
    parser.add_argument(
        "--out",
        required=True,
        metavar="DIR",
        help="results directory: rows/, envs/, processes/ (the sweep's), claims.json and site/ go here "
        "(an existing one is resumed: cases already in it are not run again)",
    )
    parser.add_argument(
        "--history",
        nargs="*",
        default=[],
        metavar="DIR",
        help="earlier results directories, oldest first, for the report's history page",
    )
    parser.add_argument(
        "--check", action="store_true", help="open the report in headless Chromium and check it"
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a (verified) claim FAILs or any claim ERRORs"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    for d in args.history:
        if not Path(d).is_dir():
            print(f"natbench reproduce: history directory {d} does not exist", file=sys.stderr)
            return 2
    try:
        summary = reproduce(args.preset, args.out, args.history, progress=not args.no_progress)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        print(f"natbench reproduce: {exc}", file=sys.stderr)
        return 2
    from natbench.claims.cli import format_table, skip_summary

    judged = [v for v in summary["verdicts"] if v.verdict != "SKIP"]
    print(format_table(judged))
    skips = skip_summary(summary["verdicts"])
    if skips:
        print(skips + "\n(each claim's own reason: see claims.json)\n")
    counts = ", ".join(f"{k} {n}" for k, n in summary["counts"].items())
    cases = ", ".join(f"{k} {n}" for k, n in summary["sweep_status"].items())
    print(f"results: {summary['results']} ({cases})")
    print(f"claims:  {summary['claims']} ({counts})")
    print(f"report:  {Path(summary['report']).resolve()}")
    if args.check:
        from natbench.report.check import ChromiumUnavailable, check_site

        try:
            problems = check_site(Path(summary["report"]).parent)
        except ChromiumUnavailable as exc:
            print(f"natbench reproduce --check: {exc}", file=sys.stderr)
            return 2
        for p in problems:
            print(f"broken: {p}", file=sys.stderr)
        if problems:
            return 1
        print("check:   every page loaded in Chromium, every image has a size, every link resolves")
    errors = [v.id for v in summary["verdicts"] if v.verdict == "ERROR"]
    if errors:  # natbench's own failure: never a silent 0
        print(f"ERROR: {', '.join(errors)}", file=sys.stderr)
        return 1
    if args.strict and summary["failed"]:
        print(f"FAIL: {', '.join(summary['failed'])}", file=sys.stderr)
        return 1
    return 0
