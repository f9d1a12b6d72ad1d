"""A case measured in R fresh processes; the processes of a sweep's cases may be spread over the sweep.

Each process is a full start: build, prime (a timed calibration workload), warm-up, timed calls (gc off),
then the peak-memory pass. `run_process` runs one; `combine` makes the case's row from its processes: one
median per process (`latency_process_ms`), their median with a 95 % bootstrap interval over processes
(natbench.measure.stats), so the noise between processes and minutes is in the interval. `run_repeated` runs
a case's R processes one after the other (spread over `span` seconds if asked), then re-runs the ones the
machine slowed; a sweep (natbench.sweep.runner) runs them round-robin over its cases, so that each case's
processes span the sweep's minutes. Pairs (natbench.measure.pair) and groups (natbench.measure.group), whose
members are timed interleaved in each process, go the same way.
The interval is conditional on that selection: processes left out are kept in `latency_dropped_process_ms`.
"""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime
from typing import Any

import numpy as np

from natbench.measure.drift import DriftProfile, widen
from natbench.measure.group import GroupSpec, group_row
from natbench.measure.interleave import measure_interleaved
from natbench.measure.pair import PairSpec, measure_pair, pair_row
from natbench.measure.stats import median_known

DEFAULT_REPEATS = 5  # with 3 the interval is min..max of three: it holds another run's median ~56 %

# A shared machine slows whole processes in bursts of seconds (tiled NA 112x112, 30 processes: 15 of the 17
# whose matmul calibration read 0.33 ms took 22.9-25.8 ms; 8 of the 13 that read 0.39-0.58 ms took 34-45 ms), and the
# few processes of one case often fall into one burst. Such a process is "contended"; the case runs up to its
# share of repeats more processes, and a row is made of the least contended processes.
# a calibration reading this much slower than the machine's quiet speed: slowed by other work
CONTENDED = 0.10
# The quiet speed is the reading that a tenth of the processes beat (the fastest while ten or fewer ran): on
# a second VM (Intel Xeon) the matmul read 5-10 % faster than its median in a few lucky processes, so against
# the fastest reading 246 of a sweep's 270 kept case processes counted as contended (against this quantile, 83)
# and the re-run budget went to whichever cases came first; on the AMD VM the two references differ by 0.5 %.
QUIET_QUANTILE = 0.10
# the matmul read before and after timing, and the sentinel read between the timed blocks (it sees what the
# other misses: 19 processes' medians followed it with correlation 0.94, the before / after reading 0.28); the
# copy's reading moves +-25 % between quiet processes: not a signal here
CALIBRATIONS = ("calib_ms", "sentinel_ms")
LEVEL = "members_level"  # a pair's or group's reference: its quiet members' level (`quiet`)
DEFAULT_RERUNS = 0.4  # at most this share of a case's repeats is run again (5 repeats: 2 re-runs)

__all__ = [
    "DEFAULT_REPEATS",
    "GroupSpec",
    "PairSpec",
    "combine",
    "contended",
    "quiet_reference",
    "finish",
    "measure_pair",
    "run_pair",
    "run_process",
    "run_repeated",
    "select",
]


def machine_load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def is_busy(load_before: float | None, load_after: float | None) -> bool | None:
    """More runnable work than CPUs (1-min loadavg) before or after the case: timings are contended."""
    loads = [v for v in (load_before, load_after) if v is not None]
    return max(loads) > usable_cpus() if loads else None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def run_process(
    spec: dict[str, Any],
    timeout: float | None = None,
    timing: dict | None = None,
    memory_limit: int | None = None,
    log_path: str | os.PathLike | None = None,
    threads: int | None = None,
    path: list[str] | None = None,
) -> dict[str, Any]:
    """One fresh process of a case (or of a pair or group: spec["kind"]): its result with status, the
    machine's load before and after it, and its duration. path: directories first on its import path."""
    from natbench.measure.isolate import run_in_process, run_isolated

    load_before, start, started_at = machine_load(), time.monotonic(), time.time()
    interleaved = _interleaved(spec, timing)
    if interleaved is not None:
        fn, kwargs, device = interleaved
        got, status, error = run_in_process(
            fn, kwargs, timeout, device, memory_limit, log_path, threads, path
        )
        row = got or {"status": status, "error": error}
        row["duration_s"] = round(time.monotonic() - start, 3)
    else:
        # a model's MACs are counted once per case, by finish(), not in each timed process
        row = run_isolated(
            spec, timeout, timing, memory_limit, log_path, threads, count_macs=False, path=path
        )
    row.update(load_before=load_before, load_after=machine_load(), started_at=round(started_at, 3))
    return row


def _interleaved(spec: dict[str, Any], timing: dict | None):
    """(function, kwargs, device) of a pair's or group's process; None for a case."""
    if spec.get("kind") == "pair":
        pair = PairSpec.from_dict(spec)
        kwargs = {"numerator": pair.numerator.to_dict(), "denominator": pair.denominator.to_dict()}
        return measure_pair, {**kwargs, "timing": dict(timing or {})}, pair.device
    if spec.get("kind") == "group":
        group = GroupSpec.from_dict(spec)
        kwargs = {"members": [m.to_dict() for m in group.members], "timing": dict(timing or {})}
        return measure_interleaved, kwargs, group.device
    return None


def quiet(readings: list[float]) -> float:
    """The machine's quiet speed from one workload's readings: the QUIET_QUANTILE order statistic (the
    fastest among up to 1 / QUIET_QUANTILE readings)."""
    return float(np.quantile(readings, QUIET_QUANTILE, method="lower"))


def quiet_reference(processes: list[dict[str, Any]]) -> dict[str, float]:
    """The quiet speed (`quiet`) of each calibration workload over ok processes."""
    ref = {}
    for key in CALIBRATIONS:
        known = [p[key] for p in processes if p.get("status") == "ok" and p.get(key) is not None]
        if known:
            ref[key] = quiet(known)
    return ref


def members_level(process: dict[str, Any]) -> float | None:
    """An interleaved (pair or group) process's own speed: the geometric mean of its members' medians; None
    for a case's process. The members are the same in every process of a row, so only the machine moves it,
    and it sees slowdowns the calibration matmul misses (a neighbour's memory traffic slows memory-bound members
    more): over 18 stored cpu-quick sweeps, kept pair processes whose level read over 10 % above their row's
    fastest with a quiet calibration (127) lay RMS 5.2 % from their row's median ratio, those quiet by both
    (388) 3.4 %."""
    members = process.get("member_ms") or [process[k] for k in ("a_ms", "b_ms") if process.get(k)]
    if process.get("status") != "ok" or len(members) < 2:
        return None
    return float(np.exp(np.mean([np.log(np.median(m)) for m in members])))


def with_level(reference: dict[str, float], processes: list[dict[str, Any]]) -> dict[str, float]:
    """`reference` plus the quiet members' level among `processes` (one pair's or group's), if any."""
    levels = [v for v in map(members_level, processes) if v is not None]
    return {**reference, LEVEL: quiet(levels)} if levels else reference


def slowdown(process: dict[str, Any], reference: dict[str, float]) -> float:
    """How much slower than `reference` the process's slowest calibration read, or, for an interleaved
    process, its members' level (1.0: as fast)."""
    ratios = [
        process[k] / reference[k] for k in CALIBRATIONS if process.get(k) is not None and reference.get(k)
    ]
    level = members_level(process)
    if level is not None and reference.get(LEVEL):
        ratios.append(level / reference[LEVEL])
    return max(ratios, default=1.0)


def still_faulting(process: dict[str, Any]) -> bool:
    """Whether the process's timed calls still faulted pages in (natbench.measure.timer.faulting): its heap had
    not settled, and on a VM minute where faults are slow its calls ran several times slower."""
    from natbench.measure.timer import faulting

    faults, ms = process.get("timed_faults"), process.get("latency_ms")
    return faults is not None and ms is not None and faulting(float(faults), float(ms) / 1e3)


def contended(process: dict[str, Any], reference: dict[str, float]) -> bool:
    """Slowed by other work (a calibration read over CONTENDED slower than the quiet speed) or by its own page
    faults (still_faulting): a process the runner runs again and leaves out of the row when it can."""
    return slowdown(process, reference) > 1 + CONTENDED or still_faulting(process)


def select(
    processes: list[dict[str, Any]], repeats: int, reference: dict[str, float]
) -> list[dict[str, Any]]:
    """The `repeats` least contended processes, in the order they ran (uncontended ones count as equal)."""

    def key(i: int):
        busy = contended(processes[i], reference)
        return busy, slowdown(processes[i], reference) if busy else 0.0, i

    rank = sorted(range(len(processes)), key=key)
    return [processes[i] for i in sorted(rank[:repeats])]


def rerun_budget(repeats: int, share: float = DEFAULT_RERUNS) -> int:
    return int(repeats * share + 1e-9) if repeats > 1 else 0


def needs_rerun(processes: list[dict[str, Any]], repeats: int, reference: dict[str, float]) -> bool:
    """Whether fewer than `repeats` of one case's (pair's, group's) processes are uncontended."""
    ok = [p for p in processes if p.get("status") == "ok"]
    if len(ok) < len(processes):  # a failed process ends the case
        return False
    reference = with_level(reference, ok)
    return sum(not contended(p, reference) for p in ok) < repeats


def finish(
    spec: dict[str, Any],
    processes: list[dict[str, Any]],
    repeats: int | None = None,
    reference: dict[str, float] | None = None,
    drift: DriftProfile | None = None,
) -> dict[str, Any]:
    """The row of a case (or pair, or group) from its processes' results, in the order they ran.

    The row is made of the `repeats` least contended processes (all when repeats is None), judged against
    `reference` (the quiet readings of the sweep's case processes on this device; default: these
    processes' own); a pair's or group's from the same selection (a ratio does not cancel every slowdown).
    `drift` (natbench noise's profile) widens the latency interval of a case whose processes spanned less
    time than the profile's rounds."""
    loads = [r.get("load_before") for r in processes] + [r.get("load_after") for r in processes]
    loads = [v for v in loads if v is not None]
    first = processes[0].get("load_before") if processes else None
    last = processes[-1].get("load_after") if processes else None
    peak_load = max(loads) if loads else None
    run = processes
    if repeats and len(processes) > repeats and all(r.get("status") == "ok" for r in processes[:repeats]):
        # a re-run that failed does not undo the R good processes before it: it is left out and counted
        processes = [r for i, r in enumerate(processes) if i < repeats or r.get("status") == "ok"]
    reference = with_level(reference if reference is not None else quiet_reference(processes), processes)
    failed = any(r.get("status") != "ok" for r in processes)
    used = processes if failed else select(processes, repeats or len(processes), reference)
    dropped = [r for r in processes if not any(r is u for u in used)]
    accounting = {
        "busy": is_busy(peak_load, None),
        "duration_s": round(sum(r.get("duration_s") or 0 for r in run), 3),
        "processes_run": len(run),
        "rerun_failures": len(run) - len(processes),
        "contended_processes": sum(contended(r, reference) for r in processes if r.get("status") == "ok"),
    }
    if spec.get("kind") == "pair":
        row = pair_row(PairSpec.from_dict(spec), used)
        row.update(
            load_before=first,
            load_after=last,
            timestamp=_now(),
            ratio_dropped_process=[float(np.median(r["ratios"])) for r in dropped if r.get("ratios")],
            **accounting,
        )
        return row
    if spec.get("kind") == "group":
        row = group_row(GroupSpec.from_dict(spec), used)
        row.update(load_before=first, load_after=last, timestamp=_now(), **accounting)
        return row
    row = combine(
        [{k: v for k, v in r.items() if k not in ("load_before", "load_after", "started_at")} for r in used],
        first,
        last,
    )
    row.update(accounting)
    row["latency_dropped_process_ms"] = [
        float(r["latency_ms"]) for r in dropped if r.get("latency_ms") is not None
    ]
    row["latency_span_s"] = _span(used)
    widen(row, drift, spec.get("target"))
    if row.get("status") == "ok" and row.get("kind") == "model" and row.get("macs") is None:
        from natbench.measure.case import add_model_macs
        from natbench.measure.spec import CaseSpec

        try:
            add_model_macs(row, CaseSpec.from_dict(spec))
        except Exception as exc:  # natbench's own failure: the case's row says so, the sweep goes on
            row.update(status="error", error=f"counting MACs raised {type(exc).__name__}: {exc}"[:2000])
    return row


def _span(processes: list[dict[str, Any]]) -> float | None:
    """Seconds from the first process's start to the last one's end (None without start times)."""
    starts = [p.get("started_at") for p in processes]
    if not processes or any(s is None for s in starts):
        return None
    return round(max(s + (p.get("duration_s") or 0) for s, p in zip(starts, processes)) - min(starts), 3)


def combine(rows: list[dict[str, Any]], load_before, load_after) -> dict[str, Any]:
    """One case row from its per-process rows: medians across processes with bootstrap intervals."""
    from natbench.measure.stats import median_ci

    ok = [r for r in rows if r.get("status") == "ok"]
    failed = [r for r in rows if r.get("status") != "ok"]
    loads = {"load_before": load_before, "load_after": load_after, "busy": is_busy(load_before, load_after)}
    duration = round(sum(r.get("duration_s") or 0 for r in rows), 3)
    if failed:  # one failing process makes the case fail: its error says which
        row = dict(failed[0])
        if len(rows) > 1:
            row["error"] = f"process {rows.index(failed[0]) + 1} of {len(rows)}: {row.get('error')}"
        row.update(loads, repeats=len(ok), duration_s=duration)
        return row
    row = dict(ok[-1])
    medians = [float(r["latency_ms"]) for r in ok]
    med, low, high = median_ci(medians)
    pooled = np.asarray([s for r in ok for s in r.get("latency_samples_ms") or []], dtype=np.float64)
    calib = [r.get("calib_ms") for r in ok]
    calib_bw = [r.get("calib_bw_ms") for r in ok]
    calib_ms, calib_bw_ms = median_known(calib), median_known(calib_bw)
    sentinel = [r.get("sentinel_ms") for r in ok]
    relative = [r.get("latency_rel") for r in ok]
    faults = [r.get("timed_faults") for r in ok]
    counted = all(f is not None for f in faults)
    with_sentinel = (
        all(v is not None for v in sentinel + relative) and len({r.get("sentinel") for r in ok}) == 1
    )
    row.update(
        repeats=len(ok),
        calib_ms=calib_ms,
        calib_process_ms=calib if calib_ms is not None else None,
        calib_bw_ms=calib_bw_ms,
        calib_bw_process_ms=calib_bw if calib_bw_ms is not None else None,
        sentinel=ok[0].get("sentinel") if with_sentinel else None,
        sentinel_ms=float(np.median(sentinel)) if with_sentinel else None,
        sentinel_process_ms=sentinel if with_sentinel else None,
        latency_rel=float(np.median(relative)) if with_sentinel else None,
        latency_rel_process=relative if with_sentinel else None,
        timed_faults=float(np.median(faults)) if counted else None,
        timed_faults_process=faults if counted else None,
        heap_reserve_bytes=median_known([r.get("heap_reserve_bytes") for r in ok]),
        latency_ms=med,
        latency_ci_low_ms=low,
        latency_ci_high_ms=high,
        latency_process_ms=medians,
        latency_samples_ms=pooled.tolist(),
        duration_s=duration,
        **loads,
    )
    if len(pooled):
        q25, q75 = np.percentile(pooled, [25, 75])
        row.update(latency_iqr_ms=float(q75 - q25), latency_min_ms=float(pooled.min()))
    peaks = [r.get("peak_mem_bytes") for r in ok]
    if all(p is not None for p in peaks):
        pmed, plow, phigh = median_ci(peaks)
        row.update(
            peak_mem_bytes=int(round(pmed)),
            peak_mem_ci_low_bytes=int(math.floor(plow)),
            peak_mem_ci_high_bytes=int(math.ceil(phigh)),
            peak_mem_process_bytes=[int(p) for p in peaks],
        )
    if row.get("throughput") is not None and row.get("batch"):
        row["throughput"] = row["batch"] / (med / 1e3)
    return row


def run_repeated(
    spec: dict[str, Any],
    timeout: float | None = None,
    timing: dict | None = None,
    memory_limit: int | None = None,
    log_path: str | os.PathLike | None = None,
    threads: int | None = None,
    repeats: int = DEFAULT_REPEATS,
    reruns: int | None = None,
    span: float = 0.0,
    drift: DriftProfile | None = None,
) -> dict[str, Any]:
    """The row of a case (or of a pair or group: spec["kind"]) from `repeats` fresh processes, one after another.

    `timeout` applies to each process. The first process that fails (error, oom, timeout, unsupported)
    ends the case: its row says so. Up to `reruns` more processes (default: 40 % of repeats) run while fewer
    than `repeats` are uncontended; the row is made of the least contended `repeats`. A re-run
    that fails ends the re-runs and is left out (`rerun_failures`).
    span: seconds over which the processes' starts are spread (the machine idles between them), so that the
    interval holds the machine's drift over that time, as a sweep's round-robin passes do; 0: back to back.
    drift: the machine's drift profile (natbench.measure.drift.load()), added to a short run's interval.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    reruns = rerun_budget(repeats) if reruns is None else reruns
    if not 0 <= span < float("inf"):
        raise ValueError(f"span must be >= 0 seconds and finite, got {span}")
    processes = []
    start = time.monotonic()
    for i in range(repeats):
        if span and i:
            time.sleep(max(0.0, start + span * i / (repeats - 1) - time.monotonic()))
        processes.append(run_process(spec, timeout, timing, memory_limit, log_path, threads))
        if processes[-1].get("status") != "ok":
            return finish(spec, processes, drift=drift)
    for _ in range(reruns):
        if not needs_rerun(processes, repeats, quiet_reference(processes)):
            break
        processes.append(run_process(spec, timeout, timing, memory_limit, log_path, threads))
        if processes[-1].get("status") != "ok":
            break
    return finish(spec, processes, repeats, drift=drift)


def run_pair(
    pair: PairSpec,
    timeout: float | None = None,
    timing: dict | None = None,
    memory_limit: int | None = None,
    log_path: str | os.PathLike | None = None,
    threads: int | None = None,
    repeats: int = DEFAULT_REPEATS,
) -> dict[str, Any]:
    """The kind="pair" row of `pair` from `repeats` fresh processes, each timing A and B interleaved."""
    return run_repeated(pair.to_dict(), timeout, timing, memory_limit, log_path, threads, repeats)
