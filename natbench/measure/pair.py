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

from dataclasses import dataclass
from typing import Any

import numpy as np

from natbench.measure.interleave import BLOCK_S, failed_row, machine_columns, measure_interleaved
from natbench.measure.spec import CaseSpec
from natbench.results import CASE_PARAMS


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


def measure_pair(numerator: dict, denominator: dict, timing: dict | None = None) -> dict[str, Any]:
    """In this process: A and B timed in alternating rounds A B, B A, ... (natbench.measure.interleave).

    Returns {"status": "ok", "a_ms": [...], "b_ms": [...], "ratios": [...], ...} or status + error.
    """
    got = measure_interleaved([numerator, denominator], timing)
    if got["status"] != "ok":
        return got
    a_ms, b_ms = got.pop("member_ms")
    return {**got, "a_ms": a_ms, "b_ms": b_ms, "ratios": [x / y for x, y in zip(a_ms, b_ms)]}


def pair_row(pair: PairSpec, processes: list[dict[str, Any]]) -> dict[str, Any]:
    """The kind="pair" row from its processes' results (measure_pair's dicts, in order); the first that
    failed makes the row fail and says which."""
    from natbench.measure.stats import ratio_ci

    row = _pair_row(pair)
    if failed_row(row, processes) is not None:
        return row
    per_process = [float(np.median(r["ratios"])) for r in processes]
    ratio, low, high = ratio_ci(per_process)
    row.update(
        status="ok",
        repeats=len(processes),
        ratio=ratio,
        ratio_ci_low=low,
        ratio_ci_high=high,
        ratio_process=per_process,
        # members' medians in these processes (their own rows come from their own processes)
        numerator_process_ms=[float(np.median(r["a_ms"])) for r in processes],
        denominator_process_ms=[float(np.median(r["b_ms"])) for r in processes],
        **machine_columns(processes),
        timer=f"interleaved rounds of {BLOCK_S * 1e3:g} ms blocks, order alternated",
    )
    return row
