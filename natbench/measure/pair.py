"""Paired ratios: A / B at one shape, measured interleaved in the same processes so drift cancels.

A pair runs A and B in the same R fresh processes, in alternating rounds A B, B A, ...; each round gives one
A/B ratio, each process the median of its rounds, and the pair row the geometric mean of the processes'
ratios with its Student t interval (natbench.measure.stats.ratio_ci).

A ratio does not cancel every slowdown: over 10 cpu-quick sweeps the pair processes whose calibration read
slow lay 2-3x further from their row's ratio than the others (log SD 8-12 % against 3.5 %). So a pair's
processes read the calibration matmul before and after their rounds and a sentinel block after each round
(CPU), as a case's do, and the sweep re-runs and leaves out the contended ones (natbench.measure.repeat).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from natbench.measure.spec import CaseSpec
from natbench.results import CASE_PARAMS

PAIR_BLOCK_S = 0.01  # seconds of calls of one member per round
PAIR_MIN_ROUNDS = 6
PAIR_MIN_ROUNDS_SLOW = 4  # when both members' calls take over SWITCH_CALL_BELOW_S (model forwards)
# A member whose calls are shorter than this gets one untimed call after each switch (the other member left
# the caches cold); a longer call (a model forward) refills them in a fraction of a percent of its time, and
# an untimed call would double the pair's cost.
SWITCH_CALL_BELOW_S = 0.02
PAIR_SENTINEL_S = 0.004  # the sentinel block after each round (~12 matmuls): +2-12 % of a round


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


def _block(fn, n: int, device, untimed: bool = True) -> float:
    """Per-call ms of n calls, after one untimed call when `untimed`: the switch from the other member (cold
    caches) is not timed, so the ratio is of the two ops, not of the switching."""
    from natbench.measure.timer import synchronize

    if untimed:
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
    a = CaseSpec.from_dict(numerator).resolved(cuda)
    b = CaseSpec.from_dict(denominator).resolved(cuda)
    try:
        pa, device = prepare(a)
        pb, _ = prepare(b)
        with pa.context(), pb.context():
            calib = prime_runtime(device)
            with gc_disabled():
                per_call = {}
                for name, p in (("a", pa), ("b", pb)):
                    per_call[name] = max(warm_up(p.fn, device, config), 1e-7)
                n = {k: max(1, round(PAIR_BLOCK_S / v)) for k, v in per_call.items()}
                untimed = {k: v < SWITCH_CALL_BELOW_S for k, v in per_call.items()}
                min_rounds = PAIR_MIN_ROUNDS if any(untimed.values()) else PAIR_MIN_ROUNDS_SLOW
                sentinel = (
                    calibration_timer(PAIR_SENTINEL_S) if config.sentinel and device.type == "cpu" else None
                )
                a_ms, b_ms, readings = [], [], []
                start = time.perf_counter()
                while True:
                    elapsed = time.perf_counter() - start
                    rounds = len(a_ms)
                    enough = rounds >= max(min_rounds, config.min_samples) and rounds % 2 == 0
                    if (enough and elapsed >= 2 * config.min_run_time) or (
                        rounds >= 2 and elapsed >= config.max_run_time
                    ):
                        break
                    order = (("a", pa), ("b", pb)) if rounds % 2 == 0 else (("b", pb), ("a", pa))
                    got = {k: _block(p.fn, n[k], device, untimed[k]) for k, p in order}
                    a_ms.append(got["a"])
                    b_ms.append(got["b"])
                    if sentinel is not None:
                        readings.append(sentinel[0].timeit(sentinel[1]) / sentinel[1] * 1e3)
            calib = slower(calib, prime_runtime(device, CHECK_SECONDS))
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
        "calib_ms": calib,
        "sentinel_ms": float(np.median(readings)) if readings else None,
        "threads": torch.get_num_threads(),
        "device_name": _device_name(device),
        **process_settings(),
    }


def pair_row(pair: PairSpec, processes: list[dict[str, Any]]) -> dict[str, Any]:
    """The kind="pair" row from its processes' results (measure_pair's dicts, in order); the first that
    failed makes the row fail and says which."""
    from natbench.measure.stats import median_known, ratio_ci

    row = _pair_row(pair)
    ok = [r for r in processes if r.get("status") == "ok"]
    failed = [r for r in processes if r.get("status") != "ok"]
    if failed:
        prefix = (
            f"process {processes.index(failed[0]) + 1} of {len(processes)}: " if len(processes) > 1 else ""
        )
        row.update(status=failed[0]["status"], error=prefix + str(failed[0].get("error")), repeats=len(ok))
        return row
    per_process = [float(np.median(r["ratios"])) for r in ok]
    ratio, low, high = ratio_ci(per_process)
    last = ok[-1]
    calib = [r.get("calib_ms") for r in ok]
    calib_ms = median_known(calib)
    row.update(
        status="ok",
        repeats=len(ok),
        ratio=ratio,
        ratio_ci_low=low,
        ratio_ci_high=high,
        ratio_process=per_process,
        # members' medians in these processes (their own rows come from their own processes)
        numerator_process_ms=[float(np.median(r["a_ms"])) for r in ok],
        denominator_process_ms=[float(np.median(r["b_ms"])) for r in ok],
        calib_process_ms=calib if calib_ms is not None else None,
        calib_ms=calib_ms,
        threads=last["threads"],
        device_name=last["device_name"],
        affinity=last["affinity"],
        allocator=last["allocator"],
        heap_reserve_bytes=median_known([r.get("heap_reserve_bytes") for r in ok]),
        timer=f"interleaved rounds of {PAIR_BLOCK_S * 1e3:g} ms blocks, order alternated",
    )
    return row
