"""Measurement core: spec normalization, analytic MACs, timer structure, rows for ok / unsupported / oom / error."""

from __future__ import annotations

import mmap
import textwrap
import time

import numpy as np
import pytest
import torch

from natbench.measure import CaseSpec, measure_case, op_macs, run_isolated
from natbench.measure.timer import TimerConfig, Timing, time_callable
from natbench.results import COLUMNS

FAST = {"min_run_time": 0.01, "warmup": 0.0, "min_samples": 2}
TINY = {"resolution": 14, "heads": 2, "head_dim": 8}


def test_spec_normalizes_and_ids_are_deterministic():
    a = CaseSpec.from_dict({"target": "full", "kernel_size": 5, "dtype": "fp32", **TINY})
    b = CaseSpec.from_dict({"target": "full", "kernel_size": 9, **TINY})
    assert a.kernel_size is None and a.backend == "sdpa" and a.dtype == "float32"
    assert a.case_id == b.case_id  # kernel size does not apply to full attention
    na = CaseSpec.from_dict({"target": "na", "backend": "reference", **TINY})
    assert na.kernel_size == 7 and na.dilation == 1 and na.case_id.startswith("na-reference-r14-k7-")
    assert na.case_id == CaseSpec.from_dict(na.to_dict()).case_id
    assert na.case_id != CaseSpec.from_dict({**na.to_dict(), "batch": 2}).case_id
    model = CaseSpec.from_dict({"target": "nat_mini", "heads": 3})
    assert model.kind == "model" and model.heads is None and model.resolution == 224


@pytest.mark.parametrize(
    "data, match",
    [
        ({"target": "na", "colour": 1}, "unknown case field.*valid fields"),
        ({"target": "na", "dtype": "float8"}, "dtype must be one of"),
        ({"target": "na", "batch": 0}, "batch must be a positive integer"),
        ({"target": "na", "kernel_size": 4}, "must be odd"),
        ({"target": "na", "backend": "cudnn"}, "unknown NA backend"),
        ({"target": "na", "mode": "train"}, "mode must be one of"),
        ({"backend": "auto"}, "needs a 'target'"),
    ],
)
def test_spec_rejects_bad_values_with_one_clear_error(data, match):
    with pytest.raises(ValueError, match=match):
        CaseSpec.from_dict(data)


def test_op_macs_match_torch_flop_counter():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from natbench.attention import full_attention_2d, window_attention_2d

    q = torch.randn(2, 14, 14, 2, 8)
    for name, fn, k in (
        ("full", lambda: full_attention_2d(q, q, q), None),
        ("window", lambda: window_attention_2d(q, q, q, 7), 7),
    ):
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn()  # the math backend runs SDPA as two batched matmuls, which the counter sees
        assert op_macs(name, 2, 14, 2, 8, k) * 2 == counter.get_total_flops()
    # NA does the window's work at kernel = window on a map the window divides.
    assert op_macs("na", 2, 14, 2, 8, 7) == op_macs("window", 2, 14, 2, 8, 7) == 2 * 2 * 196 * 49 * 8 * 2
    assert op_macs("na", 1, 14, 2, 8, 7, mode="training") == 3 * op_macs("na", 1, 14, 2, 8, 7)
    assert op_macs("window", 1, 20, 1, 1, 7) == 2 * 21**2 * 49  # Swin pads 20 up to 21


def test_timer_reports_consistent_statistics():
    a = torch.randn(64, 64)
    t = time_callable(lambda: a @ a, "cpu", TimerConfig(**FAST))
    assert isinstance(t, Timing) and len(t.samples_ms) >= 2 and t.calls_per_sample >= 1
    assert t.min_ms == min(t.samples_ms) and t.median_ms >= t.min_ms and t.iqr_ms >= 0
    assert t.median_ms <= max(t.samples_ms)
    with pytest.raises(ValueError, match="timer method"):
        TimerConfig(method="fastest")
    with pytest.raises(ValueError, match="unknown timer setting"):
        TimerConfig.from_dict({"repeats": 3})


def test_timer_makes_no_untimed_calls_beyond_the_warm_up():
    # a slow case's cost is its call count: one warm-up call, then only the timed blocks
    calls = []
    config = TimerConfig(min_run_time=0.001, warmup=0.0, min_warmup_calls=1, min_samples=3)
    t = time_callable(lambda: calls.append(1), "cpu", config)
    assert t.method == "timeit:blocks+sentinel" and len(t.samples_ms) >= 3
    assert len(calls) == 1 + len(t.samples_ms) * t.calls_per_sample


def test_the_sentinel_is_read_after_every_timed_block_and_cancels_the_machine_s_speed():
    a = torch.randn(64, 64)
    t = time_callable(lambda: a @ a, "cpu", TimerConfig(**FAST))
    assert len(t.sentinel_ms) == len(t.samples_ms) and min(t.sentinel_ms) > 0
    assert t.relative == pytest.approx(float(np.median(np.divide(t.samples_ms, t.sentinel_ms))))
    # a block and its sentinel slowed alike (a busy moment) leave the relative time as it was
    calm = Timing([2.0, 2.0, 2.0], 1, "timeit:blocks+sentinel", [0.5, 0.5, 0.5])
    busy = Timing([2.0, 3.0, 2.4], 1, "timeit:blocks+sentinel", [0.5, 0.75, 0.6])
    assert calm.relative == busy.relative == 4.0 and busy.median_ms == 2.4
    off = time_callable(lambda: a @ a, "cpu", TimerConfig(**FAST, sentinel=False))
    assert off.sentinel_ms is None and off.relative is None and off.method == "timeit:blocks"
    with pytest.raises(ValueError, match="one reading per sample"):
        Timing([1.0, 2.0], 1, "timeit:blocks+sentinel", [0.5])


def test_timed_blocks_count_the_page_faults_of_their_calls():
    def fresh_pages():  # a new 16 MiB mapping every call: every page faults in
        buf = mmap.mmap(-1, 16 << 20)
        view = np.frombuffer(buf, dtype=np.uint8)
        view[::4096] = 1
        del view
        buf.close()

    faulting = time_callable(fresh_pages, "cpu", TimerConfig(**FAST, sentinel=False))
    assert faulting.faults_per_call >= 4096  # 16 MiB of 4 KiB pages
    a = torch.randn(64, 64)
    steady = time_callable(lambda: a @ a, "cpu", TimerConfig(**FAST, sentinel=False))
    assert steady.faults_per_call < 1


def test_warm_up_goes_on_while_calls_fault_pages_in(monkeypatch):
    from natbench.measure import timer

    faults, calls = [0], []

    def fn():  # the first 3 calls grow the heap (faults), then it is steady
        calls.append(1)
        faults[0] += 50_000 if len(calls) <= 3 else 0

    monkeypatch.setattr(timer, "_minor_faults", lambda: faults[0])
    config = TimerConfig(warmup=0.0, min_warmup_calls=1)
    timer.warm_up(fn, torch.device("cpu"), config)
    assert len(calls) == 4  # 3 faulting calls, then one that faulted nothing
    calls.clear()
    faults[0] = 0
    monkeypatch.setattr(timer, "MAX_SETTLE_CALLS", 1)
    timer.warm_up(fn, torch.device("cpu"), config)
    assert len(calls) == 2  # bounded: min_warmup_calls + MAX_SETTLE_CALLS


def test_warm_up_counts_faults_that_cost_little_of_a_call_as_steady(monkeypatch):
    from natbench.measure import timer

    faults, calls = [0], []

    def fn(seconds):
        calls.append(1)
        faults[0] += 1_000  # ~2 ms of faults at timer.FAULT_SECONDS each
        time.sleep(seconds)

    monkeypatch.setattr(timer, "_minor_faults", lambda: faults[0])
    config = TimerConfig(warmup=0.0, min_warmup_calls=1)
    timer.warm_up(lambda: fn(0.3), torch.device("cpu"), config)
    assert len(calls) == 1  # under 1 % of a 0.3 s call
    calls.clear()
    timer.warm_up(lambda: fn(0.0), torch.device("cpu"), config)
    assert len(calls) == 1 + timer.MAX_SETTLE_CALLS  # most of a quick call: it settles


HEAP_PROBE = textwrap.dedent(
    """
    import ctypes, resource, sys
    from natbench.measure import memory
    fixed = sys.argv[1] == "fixed"
    if fixed:
        assert memory.fix_malloc_thresholds()
    reserved = memory.reserve_heap(int(sys.argv[2]))
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    block = libc.malloc(32 << 20)
    ctypes.memset(block, 1, 32 << 20)  # 8192 pages, past the heap's top
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    print(reserved, faults, memory.process_settings()["heap_reserve_bytes"])
    """
)


@pytest.mark.parametrize(
    "mode, ask, reserved, faulted",
    [("fixed", 64 << 20, 64 << 20, False), ("fixed", 0, 0, True), ("plain", 64 << 20, 0, True)],
)
def test_a_reserved_heap_is_resident_when_a_later_block_lands_on_it(mode, ask, reserved, faulted):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", HEAP_PROBE, mode, str(ask)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    got, faults, settings = (int(x) for x in out.stdout.split())
    assert got == reserved == settings  # not without the never-trim heap: a trimming free would give it back
    assert (faults >= 8000) == faulted, faults


def test_processes_start_without_glibc_s_tcache_and_the_caller_keeps_its_environment(monkeypatch):
    import os

    from natbench.measure import memory

    monkeypatch.setattr(memory.sys, "platform", "linux")
    monkeypatch.setenv("GLIBC_TUNABLES", "glibc.malloc.arena_max=2")
    with memory.no_tcache_env():
        assert os.environ["GLIBC_TUNABLES"] == f"glibc.malloc.arena_max=2:{memory.NO_TCACHE}"
        with memory.no_tcache_env():  # already there: once
            assert os.environ["GLIBC_TUNABLES"].count(memory.NO_TCACHE) == 1
    assert os.environ["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2"
    monkeypatch.delenv("GLIBC_TUNABLES")
    with memory.no_tcache_env():
        assert os.environ["GLIBC_TUNABLES"] == memory.NO_TCACHE
    assert "GLIBC_TUNABLES" not in os.environ
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    with memory.no_tcache_env():
        assert "GLIBC_TUNABLES" not in os.environ


def test_warm_up_reserves_heap_after_a_first_call_that_grew_it(monkeypatch):
    from natbench.measure import timer

    heap, faults, asked, calls = [100 << 20], [0], [], []

    def first_call_grows():  # 16 MiB of new heap in call 1, resident pages after
        calls.append(1)
        if len(calls) == 1:
            heap[0] += 16 << 20
            faults[0] += (16 << 20) // 4096

    monkeypatch.setattr(timer, "_minor_faults", lambda: faults[0])
    monkeypatch.setattr(timer, "heap_bytes", lambda: heap[0])
    monkeypatch.setattr(timer, "reserve_heap", asked.append)
    config = TimerConfig(warmup=0.0, min_warmup_calls=1)
    timer.warm_up(first_call_grows, torch.device("cpu"), config)
    assert asked == [timer.HEAP_RESERVE_FACTOR * (16 << 20)] and len(calls) == 2
    asked.clear()
    a = torch.randn(64, 64)
    timer.warm_up(lambda: a @ a, torch.device("cpu"), config)
    assert asked == []  # a first call that faulted nothing reserves nothing


@pytest.mark.parametrize(
    "target, extra, kernel",
    [
        ("na", {"backend": "reference", "kernel_size": 3}, "reference:gather"),
        ("window", {"kernel_size": 7, "shifted": True}, "sdpa:shifted-window"),
        ("full", {}, "sdpa:full"),
    ],
)
@pytest.mark.parametrize("mode", ["inference", "training"])
def test_op_rows_have_every_measurement(target, extra, kernel, mode):
    row = measure_case({"target": target, "mode": mode, **TINY, **extra}, FAST)
    assert row["status"] == "ok", row.get("error")
    assert set(row) <= set(COLUMNS)
    assert row["kernel"] == kernel and row["kind"] == "op" and row["tokens"] == 196
    samples = row["latency_samples_ms"]
    assert samples and row["latency_min_ms"] == min(samples) and row["latency_ms"] >= row["latency_min_ms"]
    expected = op_macs(target, 1, 14, 2, 8, extra.get("kernel_size"), mode)
    assert row["macs"] == expected and row["flops"] == 2 * expected
    assert row["peak_mem_bytes"] >= 0 and row["env"]["python"]


def test_window_pads_maps_the_window_does_not_divide():
    row = measure_case(
        {"target": "window", "resolution": 10, "kernel_size": 4, "heads": 1, "head_dim": 4}, FAST
    )
    assert row["status"] == "ok" and row["kernel"] == "sdpa:window+pad"
    assert row["macs"] == 2 * 12**2 * 16 * 4


@pytest.mark.parametrize(
    "data, reason",
    [
        ({"target": "na", "backend": "natten", "rpb": True}, "no relative positional bias"),
        ({"target": "na", "backend": "reference", "kernel_size": 15}, "larger than the 14x14 map"),
        ({"target": "full", "device": "cuda"}, "needs CUDA"),
    ],
)
def test_unsupported_combinations_give_a_reason_not_a_crash(data, reason):
    if data.get("device") == "cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    row = measure_case({**TINY, **data}, FAST, with_env=False)
    assert row["status"] == "unsupported" and reason in row["error"]
    assert "latency_ms" not in row


@pytest.fixture
def factories(tmp_path, monkeypatch):
    """A user case module (the `package.module:function` extension point) with failing factories."""
    (tmp_path / "user_cases.py").write_text(
        textwrap.dedent("""
        import os, time, torch

        def matmul(spec, device, dtype):
            a = torch.randn(32, 32, device=device, dtype=dtype)
            return (lambda: a @ a), {"macs": 32 ** 3, "kernel": "user:matmul"}

        def raises(spec, device, dtype):
            raise KeyError("no such layer")

        def exits(spec, device, dtype):
            print("about to exit", flush=True)
            os._exit(3)

        def segfaults(spec, device, dtype):
            import ctypes
            ctypes.string_at(0)

        def sleeps(spec, device, dtype):
            time.sleep(60)
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_user_case_factory_and_errors_in_process(factories):
    row = measure_case({"target": "user_cases:matmul"}, FAST, with_env=False)
    assert row["status"] == "ok" and row["kind"] == "custom" and row["macs"] == 32**3
    assert row["kernel"] == "user:matmul"
    row = measure_case({"target": "user_cases:raises"}, FAST, with_env=False)
    assert row["status"] == "error" and "KeyError" in row["error"] and "no such layer" in row["error"]


@pytest.mark.parametrize(
    "factory, status, message",
    [
        ("exits", "error", "exited with code 3"),
        ("segfaults", "error", "SIGSEGV"),
        ("sleeps", "timeout", "no result after 3 s"),
    ],
)
def test_isolated_case_survives_crash_exit_and_hang(factories, tmp_path, factory, status, message):
    log = tmp_path / f"{factory}.log"
    row = run_isolated({"target": f"user_cases:{factory}"}, timeout=3, timing=FAST, log_path=log)
    assert row["status"] == status and message in row["error"], row
    assert row["case_id"].startswith("user-cases.") and row["duration_s"] > 0
    if factory == "exits":
        assert "about to exit" in row["error"]  # the end of the case's output explains the crash


def test_isolated_out_of_memory_is_reported_as_oom():
    # ~2.5 GB of gathered keys against a 256 MiB address-space allowance: a real allocation failure.
    spec = {"target": "na", "backend": "reference", "batch": 8, "resolution": 112, "heads": 4, "head_dim": 32}
    row = run_isolated(spec, timeout=60, timing=FAST, memory_limit=256 * 2**20)
    assert row["status"] == "oom", row
    assert "allocate" in row["error"]


def test_isolated_row_matches_spec_and_measures_memory():
    spec = {"target": "na", "backend": "reference", "batch": 2, "resolution": 28, "heads": 2, "head_dim": 16}
    row = run_isolated(spec, timeout=60, timing=FAST, threads=1)
    assert row["status"] == "ok" and row["case_id"] == CaseSpec.from_dict(spec).case_id
    assert row["threads"] == 1
    # The gather oracle holds keys and values of every neighbour: at least 2 * B*H*W*k*k*heads*D floats.
    gathered = 2 * 2 * 28 * 28 * 49 * 2 * 16 * 4
    assert row["peak_mem_bytes"] >= gathered


def test_model_case(monkeypatch):
    models = pytest.importorskip("natbench.models", reason="natbench.models is not there yet")
    once = {"min_run_time": 0.01, "warmup": 0.0, "min_warmup_calls": 1, "min_samples": 1}
    row = measure_case({"target": "nat_mini", "backend": "reference", "resolution": 32, "batch": 2}, once)
    assert row["status"] == "ok", row.get("error")
    params = sum(p.numel() for p in models.create_model("nat_mini").parameters())
    assert row["params"] == params
    assert row["macs"] == models.model_info("nat_mini", 32)["macs"] * 2
    assert row["throughput"] == pytest.approx(2 / (row["latency_ms"] / 1e3))
    assert row["kernel"].startswith("reference:") and row["latency_samples_ms"]
    row = measure_case({"target": "swin_tiny", "backend": "flex"}, FAST, with_env=False)
    assert row["status"] == "unsupported" and "NAT/DiNAT models only" in row["error"]


def test_model_macs_follow_a_kernel_size_override():
    from natbench.measure import measure_case
    from natbench.models import model_info

    spec = {"target": "nat_mini", "resolution": 64, "kernel_size": 5, "device": "cpu"}
    row = measure_case(spec, timing={"min_run_time": 0.01})
    assert row["status"] == "ok", row["error"]
    assert (
        row["macs"] == model_info("nat_mini", 64, kernel_size=5)["macs"] != model_info("nat_mini", 64)["macs"]
    )


def test_cpu_peak_memory_counts_allocator_bytes_exactly():
    from natbench.measure.memory import PeakMemory

    mem = PeakMemory("cpu")
    mem.baseline()
    held = torch.empty(2**18)  # 1 MiB of inputs
    scratch = torch.empty(2**19)  # 2 MiB the builder frees again
    del scratch
    mem.built()
    mem.reset_peak()
    first = torch.empty(2 * 2**18)  # 2 MiB, freed before the larger temporary: not added to it
    del first
    temp = torch.empty(3 * 2**18)  # 3 MiB of temporaries, freed before the call returns
    out = held.clone()  # 1 MiB output, alive with the temporaries
    del temp
    assert mem.peak_increase() == 1 * 2**20 + 4 * 2**20
    assert mem.method.startswith("cpu allocated")
    del out


def test_cpu_peak_memory_leaves_a_running_profiler_alone_and_stops_its_own_on_error():
    from natbench.measure.memory import PeakMemory

    with torch.autograd.profiler.profile() as outer:
        mem = PeakMemory("cpu")
        mem.baseline()
        mem.built()
        mem.reset_peak()
        torch.ones(4).sum()
        assert mem.peak_increase() is None and "already running" in mem.method
        assert torch.autograd._profiler_enabled()  # the caller's profiler still runs
    assert any(e.name == "aten::ones" for e in outer.function_events)
    mem = PeakMemory("cpu")
    mem.baseline()
    mem.close()  # what prepare() does when the builder raises
    assert not torch.autograd._profiler_enabled()


def test_a_case_that_raises_leaves_no_profiler_running(tmp_path, monkeypatch):
    (tmp_path / "raising_cases.py").write_text(
        "import torch\n"
        "def build_fails(spec, device, dtype):\n"
        "    raise RuntimeError('no build')\n"
        "def call_fails(spec, device, dtype):\n"
        "    def fn():\n"
        "        if torch.autograd._profiler_enabled():  # only the traced memory call raises\n"
        "            raise RuntimeError('no call')\n"
        "        return torch.ones(4)\n"
        "    return fn\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    once = {
        "min_run_time": 0.001,
        "warmup": 0.0,
        "min_warmup_calls": 1,
        "min_samples": 1,
        "max_run_time": 0.001,
    }
    for target in ("raising_cases:build_fails", "raising_cases:call_fails"):
        row = measure_case({"target": target, "device": "cpu"}, once, with_env=False)
        assert row["status"] == "error" and ("no build" in row["error"] or "no call" in row["error"]), row
        assert not torch.autograd._profiler_enabled(), target


def test_copy_calibration_is_cpu_only():
    from natbench.measure.timer import copy_calibration

    assert copy_calibration("meta") is None and copy_calibration("cpu", copies=1) > 0
