"""`natbench run`: measure one case (in a fresh process) and print it."""

from __future__ import annotations

import argparse
import json
import sys

from natbench.measure.repeat import DEFAULT_REPEATS
from natbench.measure.spec import DTYPES, HELP, MODES
from natbench.results import CASE_PARAMS

# set from the flags of the same name; target, shifted and rpb are read separately
FIELDS = tuple(k for k in CASE_PARAMS if k not in ("target", "shifted", "rpb", "drop_rpb"))


def add_case_arguments(parser: argparse.ArgumentParser) -> None:
    """The case (target and its fields) and how to time it: shared by `natbench run` and `natbench ab`."""
    parser.add_argument("target", help=HELP["target"])
    parser.add_argument("--backend", default="auto", help=HELP["backend"])
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"), help=HELP["device"])
    parser.add_argument("--dtype", default="float32", help=" | ".join(DTYPES) + " (or fp32, fp16, bf16)")
    parser.add_argument("--mode", default="inference", choices=MODES, help=HELP["mode"])
    for name in ("batch", "resolution", "kernel_size", "dilation", "heads", "head_dim"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, dest=name, help=HELP[name])
    parser.add_argument("--shifted", action="store_true", help=HELP["shifted"])
    parser.add_argument("--rpb", action="store_true", help=HELP["rpb"])
    parser.add_argument("--drop-rpb", action="store_true", help=HELP["drop_rpb"])
    parser.add_argument("--min-run-time", type=float, default=0.5, metavar="S", help="seconds of timed calls")
    parser.add_argument(
        "--l2-flush", action="store_true", help="CUDA: flush L2 (256 MB write) before every call"
    )
    parser.add_argument(
        "--timeout", type=float, default=600, metavar="S", help="seconds before the case is stopped"
    )
    parser.add_argument(
        "--threads", type=int, metavar="N", help="torch threads for the case (default: torch's)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=DEFAULT_REPEATS,
        metavar="R",
        help=f"fresh processes to measure in (default {DEFAULT_REPEATS}): the row's interval is across them",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_case_arguments(parser)
    parser.add_argument(
        "--span",
        type=float,
        default=0.0,
        metavar="S",
        help="spread the processes' starts over S seconds (idle between them), so that the interval holds the "
        "machine's drift over that time, as a sweep's passes do (default 0: back to back)",
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="measure in this process (no isolation; peak memory then includes earlier work)",
    )
    parser.add_argument("--json", action="store_true", help="print the results row as one JSON line")


def case_spec(args: argparse.Namespace):
    """(CaseSpec, timing) from the case flags; ValueError saying what to change."""
    from natbench.measure.spec import CaseSpec

    data = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    data.update(target=args.target, shifted=args.shifted or None, rpb=args.rpb or None)
    data.update(drop_rpb=args.drop_rpb or None)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    spec = CaseSpec.from_dict(data)
    if spec.kind == "model":
        from natbench.measure.targets import validate_targets

        validate_targets([spec])
    return spec, {"min_run_time": args.min_run_time, "l2_flush": args.l2_flush}


def main(args: argparse.Namespace) -> int:
    from natbench.env import collect

    if not 0 <= args.span < float("inf"):
        print(
            f"natbench run: error: --span must be >= 0 seconds and finite, got {args.span}", file=sys.stderr
        )
        return 2
    try:
        spec, timing = case_spec(args)
    except ValueError as exc:
        print(f"natbench run: error: {exc}", file=sys.stderr)
        return 2
    if args.in_process:
        import torch

        from natbench.measure.case import measure_case

        if args.threads:
            torch.set_num_threads(args.threads)

        row = measure_case(spec, timing)
    else:
        import torch

        from natbench.measure import drift
        from natbench.measure.repeat import run_repeated

        resolved = spec.resolved(torch.cuda.is_available()).to_dict()
        try:
            profile = drift.load(args.threads) if resolved["device"] == "cpu" else None
        except ValueError as exc:
            print(f"natbench run: error: {exc}", file=sys.stderr)
            return 2
        row = run_repeated(
            resolved,
            args.timeout,
            timing,
            threads=args.threads,
            repeats=args.repeats,
            span=args.span,
            drift=profile,
        )
        row["env"] = collect()
        if profile is None and row.get("status") == "ok" and resolved["device"] == "cpu" and not args.json:
            noise = "natbench noise" + (f" --threads {args.threads}" if args.threads else "")
            print(
                f"note: the interval holds these processes' spread only; `{noise}` measures this machine's "
                "drift between runs once (a profile per thread count), and later runs add it",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps(row, default=str, sort_keys=True))
    else:
        print(format_row(row))
    return 0 if row["status"] in ("ok", "unsupported") else 1


def format_row(row: dict) -> str:
    keys = [
        "case_id",
        "threads",
        "status",
        "error",
        "kernel",
        "device_name",
        "repeats",
        "processes_run",
        "contended_processes",
        "rerun_failures",
        "latency_dropped_process_ms",
        "latency_ms",
        "latency_ci_low_ms",
        "latency_ci_high_ms",
        "latency_ci_method",
        "latency_process_ci_low_ms",
        "latency_process_ci_high_ms",
        "latency_process_ms",
        "latency_span_s",
        "latency_iqr_ms",
        "latency_min_ms",
        "calls_per_sample",
        "timer",
        "timed_faults_process",
        "heap_reserve_bytes",
        "peak_mem_bytes",
        "peak_mem_ci_low_bytes",
        "peak_mem_ci_high_bytes",
        "memory_method",
        "calib_ms",
        "calib_bw_ms",
        "sentinel_ms",
        "latency_rel",
        "latency_rel_process",
        "load_before",
        "load_after",
        "busy",
        "macs",
        "flops",
        "params",
        "throughput",
    ]
    lines = []
    for key in keys:
        value = row.get(key)
        if value is None:
            continue
        if key.startswith("peak_mem") or key == "heap_reserve_bytes":
            value = f"{value / 2**20:.1f} MiB"
        elif isinstance(value, list):
            value = "[" + ", ".join(f"{v:.4g}" for v in value) + "]"
        elif isinstance(value, float):
            value = f"{value:.4g}"
        lines.append((key, str(value)))
    samples = row.get("latency_samples_ms") or []
    if samples:
        lines.append(("samples", f"{len(samples)}"))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in lines)
