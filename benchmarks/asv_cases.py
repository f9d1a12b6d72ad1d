"""Shared set-up of natbench's asv suite: the parameter grids and the callables each benchmark times.

Default grids keep `asv run --quick` short on a 2-core CPU; NATBENCH_ASV_FULL=1 widens them
(bigger maps and kernels) for a full run. Cases that cannot run here raise NotImplementedError in
setup, which asv records as skipped.
"""

from __future__ import annotations

import os

FULL = os.environ.get("NATBENCH_ASV_FULL", "") not in ("", "0")

NA_BACKENDS = ["fused", "tiled", "flex", "natten", "reference"]
KERNELS = [3, 7, 13] if FULL else [7]
RESOLUTIONS = [14, 28, 56, 112] if FULL else [14, 28]
CUDA_RESOLUTIONS = [56, 112, 224, 448] if FULL else [56, 112]
MODELS = ["nat_mini", "swin_tiny"]
MODEL_RESOLUTIONS = [224, 384] if FULL else [224]
HEADS, HEAD_DIM, BATCH = 4, 32, 1
# natten's CPU path builds a dense mask (quadratic); the reference gathers k^2 keys per query
CPU_MAX_SIDE = {"natten": 28, "reference": 56}
TIMEOUT_S = 300  # flex compiles each new shape in setup (several seconds on 2 cores)


def skip(reason: str):
    """asv's convention for 'cannot run here': NotImplementedError from setup."""
    raise NotImplementedError(reason)


def need_cuda():
    import torch

    if not torch.cuda.is_available():
        skip("needs a CUDA device")


def _prepared_call(spec, build):
    """Run natbench's builder for `spec` (seeded inputs) and return a zero-argument callable of one call,
    carrying its spec so that peak memory is measured the sweep's way."""
    import torch

    from natbench.measure.case import Unsupported

    torch.manual_seed(0)
    try:
        prepared = build(spec, torch.device(spec.device), getattr(torch, spec.dtype))
    except Unsupported as exc:
        skip(str(exc))

    def call():
        with prepared.context():
            return prepared.fn()

    call.spec = spec
    return call


def attention_call(target: str, backend: str | None, resolution: int, kernel: int, device: str, dtype=None):
    """A zero-argument callable running one attention op, built by the sweep's natbench.measure.case.build_op;
    raises NotImplementedError when it cannot run. Window attention is Swin's shifted window."""
    import torch

    from natbench.attention import unavailable_reason
    from natbench.measure import case
    from natbench.measure.spec import DTYPE_SHORT, CaseSpec

    dtype = dtype or torch.float32
    if target == "na":
        reason = unavailable_reason(backend, device, dtype)
        if reason:
            skip(reason)
        limit = CPU_MAX_SIDE.get(backend) if device == "cpu" else None
        if limit and resolution > limit:
            skip(f"{backend} on CPU is limited to maps <= {limit}x{limit} here")
    if target == "full" and kernel != KERNELS[0]:
        skip("full attention has no kernel: measured once, at the first kernel size")
    if target not in ("na", "window", "full"):
        raise ValueError(f"target must be na, window or full, got {target!r}")
    dtype_name = next(name for name in DTYPE_SHORT if getattr(torch, name) == dtype)
    spec = CaseSpec.from_dict(
        {
            "target": target,
            "backend": backend or "auto",
            "device": device,
            "dtype": dtype_name,
            "batch": BATCH,
            "resolution": resolution,
            "kernel_size": kernel if target != "full" else None,
            "heads": HEADS,
            "head_dim": HEAD_DIM,
            "shifted": True if target == "window" else None,
        }
    )
    return _prepared_call(spec, case.build_op)


def model_call(name: str, resolution: int, device: str, dtype=None):
    """A model's forward pass, built as a sweep builds a model case."""
    import torch

    from natbench.measure import case
    from natbench.measure.spec import DTYPE_SHORT, CaseSpec

    dtype = dtype or torch.float32
    dtype_name = next(n for n in DTYPE_SHORT if getattr(torch, n) == dtype)
    spec = CaseSpec.from_dict(
        {"target": name, "resolution": resolution, "device": device, "dtype": dtype_name, "batch": BATCH}
    )
    return _prepared_call(spec, case.BUILDERS["model"])


PEAK_TIMING = {"min_run_time": 0.01, "warmup": 0.0}


def peak_memory_bytes(fn, device: str) -> int:
    """Peak memory of the call's case measured as a sweep does: in a fresh process, natbench's definition."""
    from natbench.measure.isolate import run_isolated

    row = run_isolated(fn.spec.to_dict(), TIMEOUT_S, PEAK_TIMING)
    if row["status"] != "ok":
        raise RuntimeError(f"peak memory of {fn.spec.case_id}: {row['status']}: {row.get('error')}")
    return int(row["peak_mem_bytes"])


def cuda_latency_ms(fn) -> float:
    """Median of CUDA-event timings (natbench.measure.timer), after warm-up."""
    from natbench.measure.timer import TimerConfig, time_callable

    return time_callable(fn, "cuda", TimerConfig(min_run_time=0.2)).median_ms
