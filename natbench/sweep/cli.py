"""`natbench sweep`: run a preset's grid of cases into a results directory (resumable, shardable)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        required=True,
        help="bundled preset name (smoke, cpu-quick, paper-table3, na-vs-wsa, kernel-scaling, "
        "resolution-scaling) or a .toml file",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="results directory (results.jsonl, env.json)"
    )
    parser.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="override one dimension of the preset's grids (repeatable)",
    )
    parser.add_argument(
        "--shard", metavar="I/N", help="run only shard I of N (0-based); the shards partition the grid"
    )
    parser.add_argument(
        "--timeout", type=float, metavar="S", help="seconds per case (default: the preset's, else 600)"
    )
    parser.add_argument(
        "--memory-limit",
        type=float,
        metavar="GB",
        help="CPU cases: fail an allocation past this many GiB as out of memory",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch threads per case (default: the preset's, else torch's)",
    )
    parser.add_argument(
        "--retry",
        default="",
        metavar="STATUS,...",
        help="run again the cases whose newest row has one of these statuses (e.g. timeout,error)",
    )
    parser.add_argument("--export", choices=("csv", "parquet"), help="also write DIR/results.csv or .parquet")
    parser.add_argument("--list", action="store_true", help="print the cases and exit without running")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    from natbench import results
    from natbench.sweep.runner import plan, run_sweep, summary

    try:
        if args.list:
            preset, specs = plan(args.preset, args.grid, args.shard)
            print(f"{preset.name}: {len(specs)} cases")
            for spec in specs:
                print(spec.case_id)
            return 0
        retry = tuple(s for s in args.retry.split(",") if s)
        frame = run_sweep(
            args.preset,
            args.out,
            grid=args.grid,
            shard=args.shard,
            progress=not args.no_progress,
            timeout=args.timeout,
            retry=retry,
            memory_limit_gb=args.memory_limit,
            threads=args.threads,
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"natbench sweep: error: {exc}", file=sys.stderr)
        return 2
    print(summary(frame))
    if args.export:
        path = results.export(frame, args.export, Path(args.out) / f"results.{args.export}")
        print(f"wrote {path}")
    return 0
