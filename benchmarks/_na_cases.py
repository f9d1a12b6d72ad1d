"""Attention op cases on CPU (neighborhood per backend, Swin window, full) and how to measure them.

Shared by benchmarks/test_bench_*.py: `OpCase`, `skip_reason`, `make_call` (the sweep's op builder),
`interleaved_ms` (ratios from one run), `peak_memory_bytes` (the sweep's fresh-process measurement),
`loglog_slope`.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

NA_BACKENDS = ("fused", "tiled", "flex", "natten", "reference")
BASELINES = ("window", "window-shifted", "full")
OPS = NA_BACKENDS + BASELINES
THREADS = int(os.environ.get("NATBENCH_BENCH_THREADS", "2"))  # the setting: 2 threads


@dataclass(frozen=True)
class OpCase:
    op: str  # an NA backend name, "window", "window-shifted" (shift = k // 2) or "full"
    side: int  # square feature map side
    kernel: int = 7  # NA kernel size = Swin window size
    dilation: int = 1
    heads: int = 2
    head_dim: int = 32
    batch: int = 1
    dtype: str = "float32"
    rpb: bool = False

    @property
    def tokens(self) -> int:
        return self.side * self.side

    @property
    def label(self) -> str:
        extra = f"-d{self.dilation}" if self.dilation > 1 else ""
        return f"{self.op}-{self.side}x{self.side}-k{self.kernel}{extra}-{self.dtype}"


def skip_reason(case: OpCase) -> str | None:
    """Why this case is not measured on a CPU, in words; None if it runs."""
    if case.op not in OPS:
        return f"unknown op {case.op!r}; choose one of {OPS}"
    if case.op == "natten" and case.side > 56:
        return "natten's CPU path (unfused Flex) builds the full score matrix: quadratic memory, >18 s at 112x112"
    if case.op == "natten" and case.rpb:
        return "natten >= 0.20 has no relative positional bias"
    if case.op == "reference" and case.side > 112:
        return "the gather oracle copies k*k keys per query: ~1.3 GB and seconds per call at 224x224"
    if case.op == "full" and case.side > 112:
        return "full attention over 50k+ tokens is ~0.6 TFLOP per call: tens of seconds on 2 CPU cores"
    if case.op in NA_BACKENDS:
        import torch

        from natbench.attention import unavailable_reason

        return unavailable_reason(case.op, "cpu", getattr(torch, case.dtype), case.rpb)
    return None


def spec_of(case: OpCase):
    """The sweep's CaseSpec of an OpCase (CPU, inference)."""
    from natbench.measure.spec import CaseSpec

    na = case.op in NA_BACKENDS
    target = "na" if na else ("full" if case.op == "full" else "window")
    return CaseSpec.from_dict(
        {
            "target": target,
            "backend": case.op if na else "auto",
            "device": "cpu",
            "dtype": case.dtype,
            "batch": case.batch,
            "resolution": case.side,
            "kernel_size": None if target == "full" else case.kernel,
            "dilation": case.dilation if na else None,
            "heads": case.heads,
            "head_dim": case.head_dim,
            "shifted": (case.op == "window-shifted") if target == "window" else None,
            "rpb": case.rpb if target != "full" else None,
        }
    )


def make_call(case: OpCase, seed: int = 0) -> Callable[[], object]:
    """A zero-argument callable running the op once (no autograd), built by natbench.measure.case.build_op
    on seeded random inputs: the op a sweep times, window padding done beforehand."""
    import torch

    from natbench.measure import case as measure_case

    spec = spec_of(case)
    torch.manual_seed(seed)
    prepared = measure_case.build_op(spec, torch.device("cpu"), getattr(torch, case.dtype))

    def call():
        with prepared.context():
            return prepared.fn()

    return call


def interleaved_ms(
    calls: dict[str, Callable[[], object]], rounds: int = 10, warmup: int = 1
) -> dict[str, list]:
    """Wall times (ms) of several calls taken in turn, so that load on a shared machine hits all alike."""
    for fn in calls.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, fn in calls.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def median(values: list[float]) -> float:
    return statistics.median(values)


def peak_memory_bytes(case: OpCase, threads: int = THREADS, timeout_s: float = 600) -> int:
    """Peak memory of the op measured as a sweep measures it (natbench.measure.isolate: a fresh process,
    natbench.measure.memory's definition)."""
    from natbench.measure.isolate import run_isolated

    row = run_isolated(
        spec_of(case).to_dict(), timeout_s, {"min_run_time": 0.01, "warmup": 0.0}, threads=threads
    )
    if row["status"] != "ok":
        raise RuntimeError(f"peak-memory run of {case.label} failed: {row['status']}: {row.get('error')}")
    return int(row["peak_mem_bytes"])


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """The exponent p of y ~ x^p (natbench's claims fit)."""
    from natbench.claims.scaling import fit_power_law

    return fit_power_law(xs, ys).exponent
