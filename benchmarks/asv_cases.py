"""Shared set-up of natbench's asv suite: the parameter grids and the callables each benchmark times.

Default grids keep `asv run --quick` short on a 2-core CPU; NATBENCH_ASV_FULL=1 widens them
(bigger maps and kernels) for a full run. Cases that cannot run here raise NotImplementedError in
setup, which asv records as skipped.
"""

from __future__ import annotations

import os

FULL = os.environ.get("NATBENCH_ASV_FULL", "") not in ("", "0")

NA_BACKENDS = ["tiled", "flex", "natten", "reference"]
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


def attention_call(target: str, backend: str | None, resolution: int, kernel: int, device: str, dtype=None):
    """A zero-argument callable running one attention op; raises NotImplementedError when it cannot run."""
    import torch

    from natbench.attention import (
        full_attention_2d,
        neighborhood_attention_2d,
        unavailable_reason,
        window_attention_2d,
    )

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
    if kernel > resolution:
        skip(f"kernel {kernel} is larger than the {resolution}x{resolution} map")
    gen = torch.Generator(device="cpu").manual_seed(0)
    q, k, v = (
        torch.randn(BATCH, resolution, resolution, HEADS, HEAD_DIM, generator=gen).to(device, dtype)
        for _ in range(3)
    )
    if target == "na":
        return lambda: neighborhood_attention_2d(q, k, v, kernel, backend=backend)
    if target == "window":
        return lambda: window_attention_2d(q, k, v, kernel, shift=kernel // 2)
    if target == "full":
        return lambda: full_attention_2d(q, k, v)
    raise ValueError(f"target must be na, window or full, got {target!r}")


def model_call(name: str, resolution: int, device: str, dtype=None):
    import torch

    from natbench.models import create_model, logits

    dtype = dtype or torch.float32
    overrides = {"img_size": resolution} if name.startswith("swin") and resolution != 224 else {}
    model = create_model(name, **overrides).eval().to(device, dtype)
    x = torch.randn(BATCH, 3, resolution, resolution, device=device, dtype=dtype)

    def call():
        with torch.inference_mode():
            return logits(model, x)

    return call


def peak_memory_bytes(fn, device: str) -> int:
    """Peak memory of one call above what exists before it (inputs, weights), natbench's PeakMemory."""
    from natbench.measure.memory import PeakMemory

    meter = PeakMemory(device)
    meter.baseline()
    meter.reset_peak()
    fn()
    return meter.peak_increase()


def cuda_latency_ms(fn) -> float:
    """Median of CUDA-event timings (natbench.measure.timer), after warm-up."""
    from natbench.measure.timer import TimerConfig, time_callable

    return time_callable(fn, "cuda", TimerConfig(min_run_time=0.2)).median_ms
