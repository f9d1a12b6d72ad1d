"""Attention op cases on CPU (neighborhood per backend, Swin window, full) and how to measure them.

Shared by benchmarks/test_bench_*.py and reusable by the asv suite: `OpCase`, `skip_reason`, `make_call`,
`interleaved_ms` (ratios from one run), `peak_memory_bytes` (fresh subprocess), `loglog_slope`.
Run as a script it measures one case's peak memory: `python benchmarks/_na_cases.py '{"op": "tiled", ...}'`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

NA_BACKENDS = ("tiled", "flex", "natten", "reference")
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
    if case.op.startswith("window") and case.side % case.kernel:
        return f"window attention needs the map side ({case.side}) to be a multiple of the window ({case.kernel})"
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


def make_call(case: OpCase, seed: int = 0) -> Callable[[], object]:
    """A zero-argument callable running the op once on fresh random inputs (no autograd)."""
    import torch

    from natbench.attention import full_attention_2d, neighborhood_attention_2d, window_attention_2d

    gen = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, case.dtype)
    shape = (case.batch, case.side, case.side, case.heads, case.head_dim)
    q, k, v = (torch.randn(shape, generator=gen).to(dtype) for _ in range(3))
    rpb = (
        torch.randn(case.heads, 2 * case.kernel - 1, 2 * case.kernel - 1, generator=gen) if case.rpb else None
    )
    if case.op in NA_BACKENDS:

        def fn():
            return neighborhood_attention_2d(q, k, v, case.kernel, case.dilation, rpb, backend=case.op)
    elif case.op.startswith("window"):
        shift = case.kernel // 2 if case.op == "window-shifted" else 0

        def fn():
            return window_attention_2d(q, k, v, case.kernel, shift, rpb)
    else:

        def fn():
            return full_attention_2d(q, k, v)

    def call():
        with torch.inference_mode():
            return fn()

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
    """Peak resident memory the op adds over its inputs, measured in a fresh Python process.

    After a warm-up call (compilation, caches) and malloc_trim, the kernel's peak-RSS counter is reset
    (/proc/self/clear_refs) and the op runs once; the result is VmHWM - VmRSS before the call.
    """
    proc = subprocess.run(
        [sys.executable, __file__, json.dumps({**asdict(case), "threads": threads})],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"},  # big buffers go back to the OS when freed
    )
    if proc.returncode != 0:
        raise RuntimeError(f"peak-memory run of {case.label} failed: {proc.stderr.strip()[-500:]}")
    return int(proc.stdout.strip().splitlines()[-1])


def _measure_peak_here(spec: dict) -> int:
    import torch

    from natbench.measure.memory import PeakMemory

    torch.set_num_threads(spec.pop("threads"))
    call = make_call(OpCase(**spec))
    call()  # warm-up: compilation and caches are not the op's memory
    meter = PeakMemory("cpu")
    meter.baseline()
    meter.reset_peak()
    out = call()
    peak = meter.peak_increase()
    del out
    return peak


def loglog_slope(xs: list[float], ys: list[float]) -> float:
    """The exponent p of y ~ x^p (natbench's claims fit)."""
    from natbench.claims.scaling import fit_power_law

    return fit_power_law(xs, ys).exponent


if __name__ == "__main__":
    print(_measure_peak_here(json.loads(sys.argv[1])))
