"""Several cases timed interleaved in one process: rounds of short blocks, one block per member, the order
reversed every other round, so that whatever slows the machine for a while slows every member alike and
cancels in their ratios (natbench.measure.pair) and in a fit across them (natbench.measure.group).

The process reads the calibration matmul before and after its rounds and a sentinel block after each round
(CPU), as a case's process does, so the sweep can re-run and leave out a contended one.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

from natbench.measure.spec import CaseSpec

BLOCK_S = 0.01  # seconds of calls of one member per round
MIN_ROUNDS = 6
MIN_ROUNDS_SLOW = 4  # when every member's calls take over SWITCH_CALL_BELOW_S (model forwards)
# A member whose calls are shorter than this gets one untimed call after each switch (the member before it
# left the caches cold); a longer call (a model forward) refills them in a fraction of a percent of its time,
# and an untimed call would double the process's cost.
SWITCH_CALL_BELOW_S = 0.02
SENTINEL_S = 0.004  # the sentinel block after each round (~12 matmuls): +2-12 % of a pair's round


def _block(fn, n: int, device, untimed: bool = True) -> float:
    """Per-call ms of n calls, after one untimed call when `untimed`: the switch from the other member (cold
    caches) is not timed, so the comparison is of the members, not of the switching."""
    from natbench.measure.timer import synchronize

    if untimed:
        fn()
        synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / n * 1e3


def order(members: int, round_index: int) -> list[int]:
    """The members' order in a round: 0..n-1, then reversed, alternately."""
    forward = list(range(members))
    return forward if round_index % 2 == 0 else forward[::-1]


def measure_interleaved(members: list[dict], timing: dict | None = None) -> dict[str, Any]:
    """In this process: the members built, primed, warmed up, then timed in rounds (gc off).

    Returns {"status": "ok", "member_ms": [[ms per round] per member], "calib_ms", "sentinel_ms", ...} or
    status + error (the first member that fails to build or run fails the process).
    """
    import torch

    from natbench.measure.case import Unsupported, _device_name, is_oom, prepare
    from natbench.measure.memory import process_settings
    from natbench.measure.timer import (
        CHECK_SECONDS,
        TimerConfig,
        calibration_timer,
        gc_disabled,
        prime_runtime,
        slower,
        warm_up,
    )

    config = TimerConfig.from_dict(timing)
    cuda = torch.cuda.is_available()
    specs = [CaseSpec.from_dict(m).resolved(cuda) for m in members]
    try:
        built = [prepare(s) for s in specs]
        device = built[0][1]
        prepared = [p for p, _ in built]
        with contextlib.ExitStack() as stack:
            for p in prepared:
                stack.enter_context(p.context())
            calib = prime_runtime(device)
            with gc_disabled():
                per_call = [max(warm_up(p.fn, device, config), 1e-7) for p in prepared]
                n = [max(1, round(BLOCK_S / v)) for v in per_call]
                untimed = [v < SWITCH_CALL_BELOW_S for v in per_call]
                min_rounds = MIN_ROUNDS if any(untimed) else MIN_ROUNDS_SLOW
                sentinel = calibration_timer(SENTINEL_S) if config.sentinel and device.type == "cpu" else None
                times: list[list[float]] = [[] for _ in prepared]
                readings = []
                start = time.perf_counter()
                while True:
                    elapsed, rounds = time.perf_counter() - start, len(times[0])
                    enough = rounds >= max(min_rounds, config.min_samples) and rounds % 2 == 0
                    if (enough and elapsed >= 2 * config.min_run_time) or (
                        rounds >= 2 and elapsed >= config.max_run_time
                    ):
                        break
                    for i in order(len(prepared), rounds):
                        times[i].append(_block(prepared[i].fn, n[i], device, untimed[i]))
                    if sentinel is not None:
                        readings.append(sentinel[0].timeit(sentinel[1]) / sentinel[1] * 1e3)
            calib = slower(calib, prime_runtime(device, CHECK_SECONDS))
    except Unsupported as exc:
        return {"status": "unsupported", "error": str(exc)}
    except Exception as exc:  # the process's failure becomes its row
        return {"status": "oom" if is_oom(exc) else "error", "error": f"{type(exc).__name__}: {exc}"[:2000]}
    return {
        "status": "ok",
        "member_ms": times,
        "calib_ms": calib,
        "sentinel_ms": float(np.median(readings)) if readings else None,
        "threads": torch.get_num_threads(),
        "device_name": _device_name(device),
        **process_settings(),
    }


def failed_row(row: dict[str, Any], processes: list[dict[str, Any]]) -> dict[str, Any] | None:
    """`row` updated with the first failed process's status and error (None when every process is ok)."""
    ok = [r for r in processes if r.get("status") == "ok"]
    failed = [r for r in processes if r.get("status") != "ok"]
    if not failed:
        return None
    prefix = f"process {processes.index(failed[0]) + 1} of {len(processes)}: " if len(processes) > 1 else ""
    row.update(status=failed[0]["status"], error=prefix + str(failed[0].get("error")), repeats=len(ok))
    return row


def machine_columns(processes: list[dict[str, Any]]) -> dict[str, Any]:
    """The columns every interleaved row takes from its (ok) processes: calibration, threads, allocator."""
    from natbench.measure.stats import median_known

    calib = [r.get("calib_ms") for r in processes]
    calib_ms = median_known(calib)
    last = processes[-1]
    return {
        "calib_process_ms": calib if calib_ms is not None else None,
        "calib_ms": calib_ms,
        "threads": last["threads"],
        "device_name": last["device_name"],
        "affinity": last["affinity"],
        "allocator": last["allocator"],
        "heap_reserve_bytes": median_known([r.get("heap_reserve_bytes") for r in processes]),
    }
