"""Run a sweep's shards as jobs of submitit: a SLURM job array, or local worker processes (one per GPU).

Each job runs one shard with `run_sweep` (cases in fresh processes, as a plain sweep), into the shared
results directory; every shard writes its own rows file, and a requeued or rerun shard resumes.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import submitit

JOBS_DIR = "submitit"  # OUT/submitit: submitit's pickles and job logs


@dataclass
class SlurmOptions:
    partition: str | None = None
    gpus_per_task: int = 1
    time_limit_min: int = 240
    requeue: bool = True  # on preemption or time-out, requeue the task (it resumes from its rows)
    max_requeues: int = 3  # time-outs (preemptions do not count, as submitit does)
    array_parallelism: int = 64
    cpus_per_task: int | None = None
    account: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # further sbatch options


class ShardTask:
    """One shard of a sweep as a submitit job."""

    def __init__(self, preset: str, out: str, shard: tuple[int, int], options: dict[str, Any]):
        self.preset, self.out, self.shard, self.options = preset, out, shard, options

    def __call__(self) -> dict[str, int]:
        from natbench.sweep.runner import run_sweep

        frame = run_sweep(self.preset, self.out, shard=self.shard, progress=False, **self.options)
        return {str(k): int(v) for k, v in frame["status"].value_counts().items()}


class RequeueingShardTask(ShardTask, submitit.helpers.Checkpointable):
    """A shard that submitit requeues when SLURM preempts it or its time runs out; the rerun resumes."""

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        # the requeued task resumes: a --force applies to the first attempt only
        options = {k: v for k, v in self.options.items() if k != "force"}
        return submitit.helpers.DelayedSubmission(type(self)(self.preset, self.out, self.shard, options))


def _tasks(
    preset: str, out: str | Path, count: int, options: dict[str, Any], requeue: bool
) -> list[ShardTask]:
    cls = RequeueingShardTask if requeue else ShardTask
    return [cls(str(preset), str(out), (i, count), options) for i in range(count)]


def slurm_parameters(opts: SlurmOptions, name: str) -> dict[str, Any]:
    params: dict[str, Any] = {
        "job_name": f"natbench-{name}",
        "time": opts.time_limit_min,
        "gpus_per_task": opts.gpus_per_task or None,
        "ntasks_per_node": 1,
        "array_parallelism": opts.array_parallelism,
        "signal_delay_s": 120,
    }
    for key, value in (("partition", opts.partition), ("cpus_per_task", opts.cpus_per_task)):
        if value is not None:
            params[key] = value
    if opts.account:
        params["account"] = opts.account
    if opts.extra:
        params["additional_parameters"] = dict(opts.extra)
    return params


def slurm_script(out: str | Path, count: int, opts: SlurmOptions, name: str) -> str:
    """The sbatch file submitit submits for a `count`-task array (what --dry-run prints)."""
    from submitit.slurm.slurm import _make_sbatch_string

    folder = Path(out) / JOBS_DIR / "%j"
    command = " ".join([shlex.quote(sys.executable), "-u -m submitit.core._submit", shlex.quote(str(folder))])
    return _make_sbatch_string(
        command=command, folder=folder, map_count=count, **slurm_parameters(opts, name)
    )


def submit_slurm(preset: str, out: str | Path, count: int, options: dict[str, Any], opts: SlurmOptions):
    """Submit the shards as one SLURM job array; returns the submitit jobs (one per array task)."""
    if shutil.which("sbatch") is None:
        raise ValueError(
            "no SLURM here (sbatch is not on PATH): run on a cluster login node, "
            "or add --dry-run to print the job, or use --executor local"
        )
    executor = submitit.SlurmExecutor(folder=Path(out) / JOBS_DIR / "%j", max_num_timeout=opts.max_requeues)
    executor.update_parameters(**slurm_parameters(opts, Path(str(preset)).stem))
    tasks = _tasks(preset, out, count, options, opts.requeue)
    with executor.batch():
        jobs = [executor.submit(task) for task in tasks]
    return jobs


def run_local(
    preset: str,
    out: str | Path,
    options: dict[str, Any],
    gpus: list[int] | None = None,
    workers: int = 1,
    time_limit_min: float = 24 * 60,
) -> list[dict[str, int]]:
    """Run the shards as local submitit jobs and wait: one per GPU in `gpus` (CUDA_VISIBLE_DEVICES set to
    it), else `workers` CPU workers. Returns each job's status counts; a failed job raises its error."""
    count = len(gpus) if gpus else workers
    if count < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}")
    jobs = []
    for i, task in enumerate(_tasks(preset, out, count, options, requeue=False)):
        executor = submitit.LocalExecutor(folder=Path(out) / JOBS_DIR / "%j")
        params: dict[str, Any] = {"timeout_min": time_limit_min}
        if gpus:
            params.update(visible_gpus=[gpus[i]], gpus_per_node=1)
        executor.update_parameters(**params)
        jobs.append(executor.submit(task))
    return [job.result() for job in jobs]


def parse_gpus(text: str | None) -> list[int] | None:
    if not text:
        return None
    try:
        gpus = [int(g) for g in text.split(",") if g.strip()]
    except ValueError:
        raise ValueError(f"--gpus takes GPU indices like 0,1,2, got {text!r}") from None
    if not gpus or len(set(gpus)) != len(gpus) or min(gpus) < 0:
        raise ValueError(f"--gpus takes distinct GPU indices like 0,1,2, got {text!r}")
    return gpus
