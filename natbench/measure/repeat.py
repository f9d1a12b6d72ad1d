"""A case measured in R fresh processes, and paired ratios measured interleaved in the same processes.

Each process is a full start: build, prime, warm-up, timed calls (gc off), then the peak-memory pass. The row
keeps one median per process (`latency_process_ms`) and reports their median with a 95 % bootstrap interval
over processes (natbench.measure.stats), so the noise between processes and minutes is in the interval.

A pair (A / B at one shape) runs A and B in the same R processes, in alternating rounds A B, B A, ...; each
round gives one A/B ratio, each process the median of its rounds, and the pair row the geometric median of
the processes' ratios with its bootstrap interval: drift common to A and B cancels.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from natbench.measure.spec import CaseSpec
from natbench.results import CASE_PARAMS

DEFAULT_REPEATS = 5  # with 3 the interval is min..max of three: it holds another run's median ~56 %
PAIR_BLOCK_S = 0.01  # seconds of calls of one member per round
PAIR_MIN_ROUNDS = 6


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


@dataclass(frozen=True)
class PairSpec:
    """Latency of `numerator` / `denominator`, measured interleaved in the same processes."""

    numerator: CaseSpec
    denominator: CaseSpec

    kind = "pair"

    @property
    def case_id(self) -> str:
        return f"pair-{self.numerator.case_id}--{self.denominator.case_id}"

    @property
    def device(self) -> str:
        return self.numerator.device

    @property
    def target(self) -> str:
        return f"{self.numerator.target}/{self.denominator.target}"

    @property
    def tokens(self) -> int | None:
        return None

    def resolved(self, cuda_available: bool) -> PairSpec:
        return PairSpec(self.numerator.resolved(cuda_available), self.denominator.resolved(cuda_available))

    def to_dict(self) -> dict[str, Any]:
        a, b = self.numerator.to_dict(), self.denominator.to_dict()
        # a parameter the members share describes the pair; others are theirs (strings joined, else None)
        shared = {
            k: a[k] if a[k] == b[k] else f"{a[k]}/{b[k]}" if k in ("target", "backend") else None
            for k in CASE_PARAMS
        }
        return {**shared, "kind": "pair", "numerator": a, "denominator": b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairSpec:
        return cls(CaseSpec.from_dict(data["numerator"]), CaseSpec.from_dict(data["denominator"]))


def _pair_row(pair: PairSpec) -> dict[str, Any]:
    d = pair.to_dict()
    row = {k: d[k] for k in CASE_PARAMS}
    row.update(
        case_id=pair.case_id,
        kind="pair",
        target=pair.target,
        pair_of=[pair.numerator.case_id, pair.denominator.case_id],
        metric="latency",
    )
    return row


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


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
    row.update(
        repeats=len(ok),
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
) -> dict[str, Any]:
    """The row of a case (or of a pair: spec["kind"] == "pair") from `repeats` fresh processes.

    `timeout` applies to each process. The first process that fails (error, oom, timeout, unsupported)
    ends the case: its row says so.
    """
    from natbench.measure.isolate import run_isolated

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if spec.get("kind") == "pair":
        return run_pair(PairSpec.from_dict(spec), timeout, timing, memory_limit, log_path, threads, repeats)
    load_before = machine_load()
    rows = []
    for _ in range(repeats):
        rows.append(run_isolated(spec, timeout, timing, memory_limit, log_path, threads))
        if rows[-1].get("status") != "ok":
            break
    return combine(rows, load_before, machine_load())


def _block(fn, n: int, device) -> float:
    """Per-call ms of n calls, after one untimed call: the switch from the other member (cold caches) is
    not timed, so the ratio is of the two ops, not of the switching."""
    from natbench.measure.timer import synchronize

    fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / n * 1e3


def measure_pair(numerator: dict, denominator: dict, timing: dict | None = None) -> dict[str, Any]:
    """In this process: A and B built, primed, warmed up, then timed in alternating rounds (gc off).

    Returns {"status": "ok", "a_ms": [...], "b_ms": [...], "ratios": [...], ...} or status + error.
    """
    import torch

    from natbench.measure.case import Unsupported, _device_name, is_oom, prepare
    from natbench.measure.memory import process_settings
    from natbench.measure.timer import TimerConfig, gc_disabled, prime_runtime, warm_up

    config = TimerConfig.from_dict(timing)
    cuda = torch.cuda.is_available()
    a = CaseSpec.from_dict(numerator).resolved(cuda)
    b = CaseSpec.from_dict(denominator).resolved(cuda)
    try:
        pa, device = prepare(a)
        pb, _ = prepare(b)
        with pa.context(), pb.context():
            prime_runtime(device)
            with gc_disabled():
                per_call = {}
                for name, p in (("a", pa), ("b", pb)):
                    per_call[name] = max(warm_up(p.fn, device, config), 1e-7)
                n = {k: max(1, round(PAIR_BLOCK_S / v)) for k, v in per_call.items()}
                a_ms, b_ms = [], []
                start = time.perf_counter()
                while True:
                    elapsed = time.perf_counter() - start
                    rounds = len(a_ms)
                    enough = rounds >= max(PAIR_MIN_ROUNDS, config.min_samples) and rounds % 2 == 0
                    if (enough and elapsed >= 2 * config.min_run_time) or (
                        rounds >= 2 and elapsed >= config.max_run_time
                    ):
                        break
                    order = (("a", pa), ("b", pb)) if rounds % 2 == 0 else (("b", pb), ("a", pa))
                    got = {k: _block(p.fn, n[k], device) for k, p in order}
                    a_ms.append(got["a"])
                    b_ms.append(got["b"])
    except Unsupported as exc:
        return {"status": "unsupported", "error": str(exc)}
    except Exception as exc:  # the pair's failure becomes its row
        return {"status": "oom" if is_oom(exc) else "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    ratios = [x / y for x, y in zip(a_ms, b_ms)]
    return {
        "status": "ok",
        "a_ms": a_ms,
        "b_ms": b_ms,
        "ratios": ratios,
        "threads": torch.get_num_threads(),
        "device_name": _device_name(device),
        **process_settings(),
    }


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
    from natbench.measure.isolate import run_in_process
    from natbench.measure.stats import ratio_ci

    row = _pair_row(pair)
    load_before = machine_load()
    start = time.monotonic()
    kwargs = {
        "numerator": pair.numerator.to_dict(),
        "denominator": pair.denominator.to_dict(),
        "timing": dict(timing or {}),
    }
    results = []
    for i in range(repeats):
        got, status, error = run_in_process(
            measure_pair, kwargs, timeout, pair.device, memory_limit, log_path, threads
        )
        got = got or {"status": status, "error": error}
        if got["status"] != "ok":
            prefix = f"process {i + 1} of {repeats}: " if repeats > 1 else ""
            row.update(status=got["status"], error=prefix + str(got.get("error")))
            break
        results.append(got)
    load_after = machine_load()
    row.update(
        load_before=load_before,
        load_after=load_after,
        busy=is_busy(load_before, load_after),
        repeats=len(results),
        duration_s=round(time.monotonic() - start, 3),
        timestamp=_now(),
    )
    if "status" in row:
        return row
    per_process = [float(np.median(r["ratios"])) for r in results]
    ratio, low, high = ratio_ci(per_process)
    a_med = [float(np.median(r["a_ms"])) for r in results]
    b_med = [float(np.median(r["b_ms"])) for r in results]
    last = results[-1]
    row.update(
        status="ok",
        ratio=ratio,
        ratio_ci_low=low,
        ratio_ci_high=high,
        ratio_process=per_process,
        # members' medians in these processes (their own rows come from their own processes)
        numerator_process_ms=a_med,
        denominator_process_ms=b_med,
        threads=last["threads"],
        device_name=last["device_name"],
        affinity=last["affinity"],
        allocator=last["allocator"],
        timer=f"interleaved rounds of {PAIR_BLOCK_S * 1e3:g} ms blocks, order alternated",
    )
    return row
