"""`natbench sweep`: run a preset's grid of cases into a results directory (resumable, shardable)."""

from __future__ import annotations

import argparse
import sys

EXECUTORS = ("inline", "local", "slurm")  # natbench.sweep.executor runs local and slurm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        required=True,
        help="bundled preset name (smoke, cpu-quick, paper-table3, na-vs-wsa, kernel-scaling, "
        "resolution-scaling) or a .toml file",
    )
    parser.add_argument(
        "--out", required=True, metavar="DIR", help="results directory (rows/*.jsonl, envs/*.json, logs/)"
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
    parser.add_argument(
        "--force", action="store_true", help="run every case again, even those measured in this environment"
    )
    parser.add_argument(
        "--status",
        action="store_true",
        help="print done / failed / stale / pending per case (stale: rows from another environment) and exit",
    )
    parser.add_argument(
        "--executor",
        choices=EXECUTORS,
        default="inline",
        help="inline: this process; local: submitit local workers (--gpus / --workers); "
        "slurm: a SLURM job array through submitit",
    )
    parser.add_argument(
        "--gpus", metavar="I,J,...", help="local executor: one worker per GPU, CUDA_VISIBLE_DEVICES=I"
    )
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="local executor without --gpus")
    parser.add_argument(
        "--tasks", type=int, metavar="N", help="slurm: array tasks (shards); default min(cases, 64)"
    )
    parser.add_argument("--partition", help="slurm partition")
    parser.add_argument("--account", help="slurm account")
    parser.add_argument(
        "--gpus-per-task", type=int, default=1, metavar="N", help="slurm: GPUs per array task"
    )
    parser.add_argument("--cpus-per-task", type=int, metavar="N", help="slurm: CPUs per array task")
    parser.add_argument(
        "--time-limit", type=int, default=240, metavar="MIN", help="slurm / local: minutes per task"
    )
    parser.add_argument(
        "--no-requeue",
        action="store_true",
        help="slurm: do not requeue a preempted or timed-out task (by default it is, and resumes)",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="slurm: print the sbatch script submitit would submit, submit nothing",
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
        if args.status:
            return _status(args)
        retry = tuple(s for s in args.retry.split(",") if s)
        options = dict(
            grid=args.grid,
            timeout=args.timeout,
            retry=retry,
            memory_limit_gb=args.memory_limit,
            threads=args.threads,
            force=args.force,
        )
        if args.executor != "inline":
            if args.shard:
                raise ValueError("--shard is for one worker; --executor local/slurm makes the shards itself")
            return _submit(args, options)
        if args.dry_run:
            raise ValueError("--dry-run applies to --executor slurm")
        frame = run_sweep(args.preset, args.out, shard=args.shard, progress=not args.no_progress, **options)
    except (ValueError, FileNotFoundError) as exc:
        print(f"natbench sweep: error: {exc}", file=sys.stderr)
        return 2
    print(summary(frame))
    if args.export:
        path = results.export(frame, args.export, Path(args.out) / f"results.{args.export}")
        print(f"wrote {path}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from natbench.env import collect
    from natbench.sweep.runner import case_states, fingerprints, plan, status_report

    preset, specs = plan(args.preset, args.grid, args.shard)
    malformed: list[str] = []
    states = case_states(args.out, specs, fingerprints(preset, specs, collect(), args.threads), malformed)
    print(f"{preset.name} in {args.out}:")
    print(status_report(states))
    if malformed:
        print(f"malformed lines skipped: {len(malformed)} ({', '.join(malformed[:5])})")
    return 0


def _submit(args: argparse.Namespace, options: dict) -> int:
    from natbench import results
    from natbench.sweep import executor
    from natbench.sweep.runner import plan

    preset, specs = plan(args.preset, args.grid)
    if args.executor == "local":
        if args.dry_run:
            raise ValueError("--dry-run applies to --executor slurm")
        gpus = executor.parse_gpus(args.gpus)
        counts = executor.run_local(args.preset, args.out, options, gpus, args.workers, args.time_limit)
        print(f"{len(counts)} local workers finished: {counts}")
        print(results.summary(results.load(args.out)))
        return 0
    tasks = args.tasks or min(len(specs), 64)
    if tasks < 1:
        raise ValueError(f"--tasks must be at least 1, got {tasks}")
    opts = executor.SlurmOptions(
        partition=args.partition,
        gpus_per_task=args.gpus_per_task,
        time_limit_min=args.time_limit,
        requeue=not args.no_requeue,
        cpus_per_task=args.cpus_per_task,
        account=args.account,
    )
    if args.dry_run:
        print(
            f"# {preset.name}: {len(specs)} cases in {tasks} array tasks, array task i runs shard i/{tasks}"
        )
        print(executor.slurm_script(args.out, tasks, opts, preset.name))
        return 0
    jobs = executor.submit_slurm(args.preset, args.out, tasks, options, opts)
    print(f"submitted {len(jobs)} array tasks: job {jobs[0].job_id.split('_')[0]}")
    print(f"progress: natbench sweep --status --preset {args.preset} --out {args.out}")
    return 0
