"""One case in this process: build inputs for a spec, time it, read its peak memory, return a results row.

Targets: attention ops (na, window, full), natbench.models names, or `package.module:function`, a user case
factory called as function(spec: CaseSpec, device: torch.device, dtype: torch.dtype) that returns a
zero-argument callable running one call (it may also return (callable, info dict with macs/params/kernel)).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import torch
import torch.nn.functional as F

from natbench.measure.flops import model_macs, op_macs, padded_side
from natbench.measure.memory import PeakMemory, process_settings
from natbench.measure.spec import CaseSpec
from natbench.measure.timer import (
    CHECK_SECONDS,
    TimerConfig,
    copy_calibration,
    prime_runtime,
    sentinel_name,
    slower,
    synchronize,
    time_callable,
)
from natbench.results import CASE_PARAMS

NEEDS_CUDA = "needs CUDA: torch.cuda.is_available() is False on this machine"
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")


class Unsupported(Exception):
    """The case cannot run here (backend, dtype, device or shape); the message says why."""


@dataclass
class Prepared:
    fn: Callable[[], object]
    context: Callable[[], contextlib.AbstractContextManager]
    info: dict[str, Any] = field(default_factory=dict)  # macs, params, kernel, images_per_call
    kernel: Callable[[], str | None] = lambda: None
    # frees what warm-up left behind that the measured call re-creates (parameter grads), so the peak sees it
    before_peak: Callable[[], None] = lambda: None


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXT)


def spec_row(spec: CaseSpec) -> dict[str, Any]:
    """The results-row columns a spec determines."""
    d = spec.to_dict()
    row = {k: d[k] for k in CASE_PARAMS}
    row.update(case_id=spec.case_id, kind=spec.kind, tokens=spec.tokens if spec.kind == "op" else None)
    return row


def _dtype(name: str) -> torch.dtype:
    return getattr(torch, name)


def _grad_context(training: bool):
    return torch.enable_grad if training else torch.inference_mode


def build_op(spec: CaseSpec, device: torch.device, dtype: torch.dtype) -> Prepared:
    """An attention op case ready to time: inputs made (and window padding done) here, outside `fn`.

    Used by sweeps, `natbench run`, asv and the pytest-benchmark files alike. Window attention follows
    Swin: the map is zero-padded to a multiple of the window once, here, and `fn` runs on the padded
    tensors (the kernel name says +pad); a map no larger than the window is one window, without shift.
    """
    from natbench import attention

    training = spec.mode == "training"
    res, k = spec.resolution, spec.kernel_size
    if spec.target == "na":
        if k * spec.dilation > res:
            raise Unsupported(
                f"kernel_size * dilation = {k * spec.dilation} is larger than the {res}x{res} map"
            )
        try:
            backend = attention.resolve_backend(device, dtype, bool(spec.rpb), spec.backend)
        except ValueError as exc:
            raise Unsupported(str(exc)) from None
    window = min(k, res) if spec.target == "window" else k  # Swin: window = map when the map is smaller
    pad = padded_side(res, window) - res if spec.target == "window" else 0
    shape = (spec.batch, res, res, spec.heads, spec.head_dim)
    with _grad_context(training)():
        q, key, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
        if pad:
            q, key, v = (F.pad(t, (0, 0, 0, 0, 0, pad, 0, pad)) for t in (q, key, v))
        q, key, v = (t.requires_grad_(training) for t in (q, key, v))
        rpb = None
        if spec.rpb:
            rpb = torch.randn(
                spec.heads, 2 * window - 1, 2 * window - 1, device=device, dtype=dtype, requires_grad=training
            )

    if spec.target == "na":

        def call():
            return attention.neighborhood_attention_2d(q, key, v, k, spec.dilation, rpb=rpb, backend=backend)

        kernel = attention.last_kernel
    elif spec.target == "window":
        shift = window // 2 if spec.shifted and window < res else 0
        name = "sdpa:" + ("shifted-window" if shift else "window")
        name += "+pad" if pad else ""  # the padded side is in the MACs: 2 * side^2 * window^2 * ...
        name += "+window=map" if window < k else ""

        def call():
            return attention.window_attention_2d(q, key, v, window, shift=shift, rpb=rpb)

        kernel = lambda: name  # noqa: E731
    else:

        def call():
            return attention.full_attention_2d(q, key, v)

        kernel = lambda: "sdpa:full"  # noqa: E731

    inputs = [t for t in (q, key, v, rpb) if t is not None]
    fn = _backward(call, inputs) if training else call
    macs = op_macs(spec.target, spec.batch, res, spec.heads, spec.head_dim, window, spec.mode)
    return Prepared(fn, _grad_context(training), {"macs": macs}, kernel)


def _backward(call: Callable[[], torch.Tensor], inputs: list[torch.Tensor]) -> Callable[[], object]:
    grad_out: list[torch.Tensor] = []

    def step():
        out = call()
        if not grad_out:
            grad_out.append(torch.randn_like(out))
        return torch.autograd.grad(out, inputs, grad_out[0])

    return step


def _model(spec: CaseSpec, device: torch.device, dtype: torch.dtype) -> Prepared:
    try:
        from natbench import models
    except ImportError as exc:
        raise RuntimeError(f"natbench.models is not importable ({exc}); model targets need it") from exc
    from natbench.attention import last_kernel

    family = models.get_entry(spec.target).family
    overrides: dict[str, Any] = {}
    if spec.backend != "auto":
        if family not in ("nat", "dinat"):
            raise Unsupported(
                f"backend {spec.backend!r} applies to NAT/DiNAT models only; {spec.target} is {family}"
            )
        overrides["attention_backend"] = spec.backend
    if spec.kernel_size is not None:
        overrides["kernel_size"] = spec.kernel_size
    if spec.drop_rpb:
        if family not in ("nat", "dinat"):
            raise Unsupported(f"drop_rpb applies to NAT/DiNAT models only; {spec.target} is {family}")
        overrides["drop_rpb"] = True
    if family == "swin" and spec.resolution != 224:
        overrides["img_size"] = spec.resolution
    training = spec.mode == "training"
    model = models.create_model(spec.target, **overrides)
    # Inference runs the model in `dtype`; training keeps fp32 weights under autocast (mixed precision).
    model = model.to(device=device, dtype=dtype if not training else torch.float32).train(training)
    x = torch.randn(
        spec.batch,
        3,
        spec.resolution,
        spec.resolution,
        device=device,
        dtype=dtype if not training else torch.float32,
    )
    amp = training and dtype != torch.float32

    if training:

        def fn():
            model.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=amp):
                out = models.logits(model, x)
            out.float().mean().backward()
    else:

        def fn():
            return models.logits(model, x)

    params = sum(p.numel() for p in model.parameters())
    kernel = last_kernel if family in ("nat", "dinat") else (lambda: None)
    return Prepared(
        fn,
        _grad_context(training),
        {"params": params},  # MACs: model_case_macs, counted outside the timed process
        kernel,
        before_peak=lambda: model.zero_grad(set_to_none=True),
    )


@functools.lru_cache(maxsize=64)
def model_case_macs(spec: CaseSpec) -> int:
    """MACs of one call of a model case (its batch; x3 for training), counted on the meta device.

    A property of the spec, not a measurement: the sweep counts it once per case in its own process, not in
    each of the case's timed processes (0.2-0.5 s each)."""
    from natbench import models

    # a kernel_size override changes every attention layer's share
    extra = {"kernel_size": spec.kernel_size} if spec.kernel_size is not None else {}
    return model_macs(models.model_info(spec.target, spec.resolution, **extra)["macs"], spec.batch, spec.mode)


def _custom(spec: CaseSpec, device: torch.device, dtype: torch.dtype) -> Prepared:
    module_name, func_name = spec.target.split(":")
    factory = getattr(importlib.import_module(module_name), func_name)
    made = factory(spec, device, dtype)
    fn, info = made if isinstance(made, tuple) else (made, {})
    training = spec.mode == "training"
    kernel = info.pop("kernel", None)
    return Prepared(fn, _grad_context(training), dict(info), lambda: kernel)


def _import_for(spec: CaseSpec) -> None:
    import natbench.attention  # noqa: F401

    if spec.kind == "model":
        try:
            import natbench.models  # noqa: F401
        except ImportError:
            pass  # the builder reports it
    elif spec.kind == "custom":
        importlib.import_module(spec.target.split(":")[0])


BUILDERS = {"op": build_op, "model": _model, "custom": _custom}


def measure_case(
    spec: CaseSpec | dict,
    timing: TimerConfig | dict | None = None,
    with_env: bool = True,
    memory: bool = True,
    count_macs: bool = True,
) -> dict[str, Any]:
    """Measure one case in this process and return its results row; never raises for a failing case.

    Timing first (runtime primed, warm-up, timed calls with gc off), then, when `memory`, the peak-memory
    pass: one more call after the timed ones, so the memory probe never disturbs a timed call.
    Peak memory is only meaningful when this process ran nothing before (see natbench.measure.isolate).
    count_macs: count a model's MACs here (False: the caller adds them, see model_case_macs).
    """
    spec = spec if isinstance(spec, CaseSpec) else CaseSpec.from_dict(spec)
    config = timing if isinstance(timing, TimerConfig) else TimerConfig.from_dict(timing)
    spec = spec.resolved(torch.cuda.is_available())
    row = spec_row(spec)
    try:
        row.update(_measure(spec, config, memory))
        if count_macs and spec.kind == "model":
            add_model_macs(row, spec)
        row["status"] = "ok"
    except Unsupported as exc:
        row.update(status="unsupported", error=str(exc))
    except BaseException as exc:  # a case's failure becomes its row; the caller goes on
        if isinstance(exc, KeyboardInterrupt):
            raise
        row.update(status="oom" if is_oom(exc) else "error", error=f"{type(exc).__name__}: {exc}"[:2000])
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    row["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
    if with_env:
        from natbench.env import collect

        row["env"] = collect()
    return row


def add_model_macs(row: dict[str, Any], spec: CaseSpec) -> None:
    """A model row's MACs and FLOPs of one call."""
    macs = model_case_macs(spec)
    row.update(macs=macs, flops=2 * macs)


def prepare(spec: CaseSpec, memory: PeakMemory | None = None) -> tuple[Prepared, torch.device]:
    """Build a resolved spec's callable on its device (imports first, so they are baseline)."""
    if spec.device == "cuda" and not torch.cuda.is_available():
        raise Unsupported(NEEDS_CUDA)
    device, dtype = torch.device(spec.device), _dtype(spec.dtype)
    _import_for(spec)
    if memory is not None:
        memory.baseline()
    try:
        prepared = BUILDERS[spec.kind](spec, device, dtype)
    except BaseException:
        if memory is not None:
            memory.close()
        raise
    if memory is not None:
        memory.built()
    return prepared, device


def _measure(spec: CaseSpec, config: TimerConfig, with_memory: bool = True) -> dict[str, Any]:
    memory = PeakMemory(spec.device)
    prepared, device = prepare(spec, memory)
    peak = None
    with prepared.context():
        calib, calib_bw = prime_runtime(device), copy_calibration(device)
        timing = time_callable(prepared.fn, device, config)
        calib_after = prime_runtime(device, CHECK_SECONDS)
        kernel = prepared.kernel()
        if with_memory:
            prepared.before_peak()
            memory.reset_peak()
            try:
                prepared.fn()
                synchronize(device)
            except BaseException:
                memory.close()
                raise
            peak = memory.peak_increase()
    info = prepared.info
    macs = info.get("macs")
    images = spec.batch if spec.kind == "model" else None
    return {
        "kernel": kernel,
        "threads": torch.get_num_threads(),
        "device_name": _device_name(device),
        "latency_ms": timing.median_ms,
        "latency_iqr_ms": timing.iqr_ms,
        "latency_min_ms": timing.min_ms,
        "latency_samples_ms": timing.samples_ms,
        "calls_per_sample": timing.calls_per_sample,
        "timer": timing.method,
        "calib_ms": slower(calib, calib_after),
        "calib_bw_ms": calib_bw,
        "sentinel": sentinel_name() if timing.sentinel_ms else None,
        "sentinel_ms": timing.sentinel_median_ms,
        "latency_rel": timing.relative,
        "timed_faults": timing.faults_per_call,
        "peak_mem_bytes": peak,
        "memory_method": memory.method if with_memory else None,
        "macs": macs,
        "flops": 2 * macs if macs is not None else None,
        "params": info.get("params"),
        "throughput": images / (timing.median_ms / 1e3) if images else None,
        **process_settings(),
    }


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from natbench.env import _cpu_model

    return _cpu_model()
