"""`natbench noise`: measure this machine's drift floor once; `natbench run` widens its intervals by it."""

from __future__ import annotations

import argparse
import json
import sys
from functools import partial
from pathlib import Path

from natbench.measure import drift
from natbench.measure.repeat import DEFAULT_REPEATS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rounds",
        type=int,
        default=drift.DEFAULT_ROUNDS,
        help=f"runs of each probe (default {drift.DEFAULT_ROUNDS})",
    )
    parser.add_argument(
        "--span",
        type=float,
        default=drift.DEFAULT_SPAN_S,
        metavar="S",
        help=f"spread the rounds over S seconds (default {drift.DEFAULT_SPAN_S:g}): runs shorter than this get "
        "the floor",
    )
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="processes per probe run")
    parser.add_argument(
        "--threads", type=int, metavar="N", help="torch threads (a profile is per thread count)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help="write the profile here (default: this machine's file in the natbench cache)",
    )
    parser.add_argument(
        "--show", action="store_true", help="print this machine's profile (or --output's) and exit"
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help=f"forget the earlier measurements (by default the new profile pools its drift with up to "
        f"{drift.MAX_EARLIER} earlier ones of this machine: one spell is not the machine)",
    )


def main(args: argparse.Namespace) -> int:
    from natbench.measure.repeat import run_repeated

    if args.threads is not None and args.threads < 1:
        print(f"natbench noise: error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    if args.show:
        try:
            profile = drift.load(args.threads, path=args.output)
        except ValueError as exc:
            print(f"natbench noise: error: {exc}", file=sys.stderr)
            return 2
        if profile is None:
            print("no drift profile for this machine and thread count: run `natbench noise`")
            return 1
        print(json.dumps(profile.to_dict(), indent=1, sort_keys=True))
        return 0
    if args.repeats < 2:
        print(
            f"natbench noise: error: --repeats must be >= 2 (a run's own interval), got {args.repeats}",
            file=sys.stderr,
        )
        return 2
    target = args.output or drift.profile_path(*drift.this_machine(args.threads))
    why = drift.writable(target)
    if why:
        print(f"natbench noise: error: {why}; pass --output FILE", file=sys.stderr)
        return 2
    previous = None
    if not args.fresh:
        try:
            previous = drift.load(args.threads, path=target) if target.is_file() else None
        except ValueError as exc:
            print(f"natbench noise: the earlier profile is not pooled: {exc}", file=sys.stderr)
    run_case = partial(
        run_repeated, timeout=300, timing={"min_run_time": 0.5}, threads=args.threads, repeats=args.repeats
    )
    try:
        drifts, spanned = drift.measure(
            run_case, args.rounds, args.span, progress=lambda s: print(s, file=sys.stderr)
        )
    except ValueError as exc:
        print(f"natbench noise: error: {exc}", file=sys.stderr)
        return 2
    except RuntimeError as exc:
        print(f"natbench noise: error: {exc}", file=sys.stderr)
        return 1
    profile = drift.build_profile(drifts, spanned, args.rounds, args.repeats, args.threads, previous)
    try:
        path = drift.save(profile, target)
    except OSError as exc:
        print(json.dumps(profile.to_dict(), indent=1, sort_keys=True))
        print(
            f"natbench noise: error: the profile above could not be saved to {target} ({exc})",
            file=sys.stderr,
        )
        return 1
    for name, d in profile.probes.items():
        meds = ", ".join(f"{m:.3g}" for m in d.medians_ms)
        print(f"{name:<10} between runs {d.between_sd:6.1%}  drift {d.drift_sd:6.1%}  medians [{meds}] ms")
    largest, _ = profile.floor_for(None)
    pooled = (
        f"; pooled with {len(profile.earlier)} earlier measurement(s) (since "
        f"{profile.earlier[-1].measured_at}): {profile.pooled_floor:.1%}, per probe "
        + ", ".join(f"{n} {profile.probe_drift(n):.1%}" for n in profile.probes)
        if profile.earlier
        else ""
    )
    print(
        f"drift floor {profile.floor:.1%} (the probes' median) over {profile.span_s:g} s ({profile.machine})"
        f"{pooled}; a short run of an op takes its probe's drift, other ops the largest ({largest:.1%}); "
        f"written to {path}"
    )
    return 0
