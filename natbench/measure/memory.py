"""Peak memory of a case: ONE definition, the same on CPU and CUDA.

    peak_mem_bytes = (memory the case's inputs and weights hold once built)
                   + (the most memory one steady-state call needs above what is resident just before it)

Counted: inputs, weights, buffers the builder makes, and everything one call allocates at its high-water
mark (activations, outputs, workspaces; for training the parameter grads, freed before the measured call).
Not counted: imports and torch's runtime (thread pools, lazily initialised kernels: primed first), state
created during warm-up and kept between calls (compiled code, caches, allocator pools), and whatever the
timed calls left behind. The measured call is one more call after the timed ones (its own pass: it never
disturbs a timed call), in a fresh process (natbench.measure.isolate) that ran nothing before.

Both devices count allocator bytes: the bytes of the tensors torch's allocator hands out, not what the
operating system holds for the process.
CUDA: torch.cuda.memory_allocated after building minus before, plus max_memory_allocated during the call
minus memory_allocated just before it (not the caching allocator's reserve).
CPU: the same bytes from torch's allocation events (torch.autograd.profiler with profile_memory: each CPU
allocation and free with its size; only the build and the measured call run under it). Why not RSS: after
warm-up the call's temporaries land in a heap whose free pages and fragmentation depend on how many calls
ran, so the RSS a call adds moved by up to 25 % between processes and in streaks over minutes (tiled NA
112x112: 12.8-16.0 MiB for the same 11.2 MiB of tensors), while allocator bytes are the same in every process.
Not counted on CPU: allocations that bypass torch's allocator (a BLAS library's own buffers). Under a torch
profiler the caller already runs, CPU memory is not measured (None; tracing would switch the caller's off).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import sys

import torch


def _prime_cpu_runtime() -> None:
    """Start torch's thread pool and kernels' lazy state (tens of MB) so that they count as baseline."""
    a = torch.randn(256, 256)
    torch.nn.functional.scaled_dot_product_attention(a[None, None], a[None, None], a[None, None]).sum().item()


@contextlib.contextmanager
def _quiet_stderr():
    """Kineto writes a line to the process's stderr (fd 2) on every profiler start and stop."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2: nothing to keep quiet
        yield
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        os.close(saved)
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class AllocationTrace:
    """torch's CPU allocations and frees while it is open: bytes held at the end and at the peak, relative to
    its start. Frees of tensors allocated before it opened are not reported by torch: they count as kept."""

    def __init__(self):
        self._prof = None
        self.held = self.peak = 0

    def __enter__(self) -> AllocationTrace:
        from torch.autograd import profiler

        self._prof = profiler.profile(profile_memory=True)
        with _quiet_stderr():
            self._prof.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        with _quiet_stderr():
            self._prof.__exit__(*exc)
        events = [
            (e.start_ns(), e.nbytes())
            for e in self._prof.kineto_results.events()
            if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU
        ]
        held = peak = 0
        for _, nbytes in sorted(events, key=lambda e: e[0]):  # stable: equal times keep the recorded order
            held += nbytes
            peak = max(peak, held)
        self.held, self.peak = held, peak


def _profiling() -> bool:
    """A torch profiler is already running (the caller's): tracing would switch it off."""
    return bool(torch.autograd._profiler_enabled())


class PeakMemory:
    """baseline() before inputs exist, built() after, reset_peak() after warm-up, peak_increase() after
    the measured call (None on CPU when a torch profiler was already running); close() after an error."""

    def __init__(self, device: torch.device | str, stats=None):
        """stats: the GPU memory-stats source (synchronize, reset_peak_memory_stats, memory_allocated,
        max_memory_allocated, each taking the device); torch.cuda by default, a stand-in in CPU tests."""
        self.device = torch.device(device)
        self.base = self._built = self._before_call = 0
        self._trace: AllocationTrace | None = None
        self._built_bytes = 0
        self._traced = True
        self._gpu = stats if stats is not None else (torch.cuda if self.device.type == "cuda" else None)

    def baseline(self) -> None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            self._gpu.reset_peak_memory_stats(self.device)
            self.base = self._built = self._gpu.memory_allocated(self.device)
            return
        _prime_cpu_runtime()
        self._traced = not _profiling()
        if self._traced:
            self._trace = AllocationTrace().__enter__()

    def built(self) -> None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            self._built = self._gpu.memory_allocated(self.device)
            return
        if self._trace is not None:
            self._trace.__exit__(None, None, None)
            self._built_bytes, self._trace = self._trace.held, None

    def reset_peak(self) -> None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            self._gpu.reset_peak_memory_stats(self.device)
            self._before_call = self._gpu.memory_allocated(self.device)
            return
        if self._traced:
            self._trace = AllocationTrace().__enter__()

    def peak_increase(self) -> int | None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            hwm = self._gpu.max_memory_allocated(self.device)
            return max(0, self._built - self.base) + max(0, hwm - self._before_call)
        if self._trace is None:
            return None
        self._trace.__exit__(None, None, None)
        call, self._trace = self._trace.peak, None
        return max(0, self._built_bytes) + max(0, call)

    def close(self) -> None:
        """Stop a trace left open by an error, so that the process does not go on profiling."""
        if self._trace is not None:
            self._trace.__exit__(None, None, None)
            self._trace = None

    @property
    def method(self) -> str:
        if self._gpu is not None:
            return "cuda allocated: built + max_memory_allocated of one call"
        if not self._traced:
            return "not measured: a torch profiler was already running"
        return "cpu allocated: built + peak of one call (torch allocation events)"


# glibc serves every allocation above its mmap threshold (at most 32 MiB) with fresh pages and returns them on
# free, so a call that makes large temporaries faults them in again every time: 52,889 faults per call for
# shifted window attention at 336x336, ~1.8 us each on this VM, 190 ms against 87 ms without them, and the
# fault cost drifts with the host's memory pressure (window attention ran 1.74x slower an hour later while
# the matmul calibration moved 1.6 %). Case processes therefore take every block from the heap (no mmap)
# and never trim it: after warm-up a call reuses resident pages, as torch's caching allocator does on CUDA.
# Peak memory is unaffected: it counts torch's allocator bytes, not pages.
# Huge pages (torch's THP_MEM_ALLOC_ENABLE=1; the kernel here has THP on madvise) were tried and not kept:
# alone they steadied window attention 448x448 (its medians over 5 runs of 5 processes: CV 2.5 %, against
# 8.0 % over 6 runs without), but in a cpu-quick sweep its processes took 288-404 ms (148-228 ms in four
# sweeps without) and the sweep 6:04 (5:00-5:12 without).
MMAP_MAX = 0
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: the largest, i.e. never trim on free
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_fixed_thresholds = False


def fix_malloc_thresholds() -> bool:
    """No mmap'd blocks and no trimming on free for this process (a fresh case process); False if not glibc."""
    global _fixed_thresholds
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        ok = libc.mallopt(_M_MMAP_MAX, MMAP_MAX) == 1
        ok = ok and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    except (OSError, AttributeError):
        ok = False
    _fixed_thresholds = ok
    return ok


# Never trimming does not settle every heap: glibc's tcache keeps small freed chunks between the big free
# blocks, so some calls find no free block large enough and grow the heap into fresh pages, in bursts, for
# ~20 calls (reference NA 70x70, 1 thread: 49-60k faults in call 1, then 15-45k in 6 of the next 15 calls,
# 720 MiB in all, each such call 1.5-2.8x slower). Case processes therefore run without the tcache
# (NO_TCACHE, set for the processes natbench.measure.isolate starts): reference NA 42x42 with it grew its
# heap by 21-42 MiB in 2-6 of 8-12 calls after warm-up in 4 of 5 processes (5,400-13,400 faults, 29-47 ms), after
# quiet calls too, to 368-495 MiB with 155 MiB in use; without it, 223 MiB and 8-89 faults in every call
# of 3 processes (19.3-20.8 ms). Warm-up also pre-faults headroom once: after the first
# call it allocates HEAP_RESERVE_FACTOR times the heap that call grew, touches it and frees it to the top of
# the heap, where later growth lands on resident pages. Two cpu-quick sweeps against one without: processes
# whose timed calls faulted over 256 pages a call 8 (2x) and 4 (4x) against 35; the cases' own time 241 s and
# 274 s against 252 s (pre-faulting costs ~2-9 us a page); window attention 224x224 read
# 36-41 ms in every process against 41-68 ms. Capped below the trim threshold, or the free would trim it.
HEAP_RESERVE_FACTOR = 2
HEAP_RESERVE_MAX = 2**30  # 1 GiB: under the 2 GiB trim threshold with room for the free top already there
PAGE_BYTES = resource.getpagesize()
_reserved = 0


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def heap_bytes() -> int | None:
    """Bytes of heap glibc holds from the system (mallinfo2's arena: brk'd and arena heaps, not mmap'd
    blocks); None where mallinfo2 is missing (glibc < 2.33, another libc)."""
    try:
        fn = ctypes.CDLL(None).mallinfo2
    except (OSError, AttributeError):
        return None
    fn.restype = _Mallinfo2
    return int(fn().arena)


def reserve_heap(nbytes: int) -> int:
    """Pre-fault up to `nbytes` (at most HEAP_RESERVE_MAX; halved while malloc refuses, e.g. at the
    address-space limit) of free heap in this process; returns the bytes touched: 0 where
    fix_malloc_thresholds() has not run (a trimming heap would give them back) or not even a page was had."""
    global _reserved
    nbytes = min(int(nbytes), HEAP_RESERVE_MAX)
    if not _fixed_thresholds or nbytes < PAGE_BYTES:
        return 0
    libc = ctypes.CDLL(None)
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    while nbytes >= PAGE_BYTES:
        block = libc.malloc(nbytes)
        if block:
            ctypes.memset(block, 0, nbytes)
            libc.free(block)
            _reserved += nbytes
            return nbytes
        nbytes //= 2
    return 0


# glibc reads its tunables when a process starts: set for the forkserver (or a spawned case) before it starts
NO_TCACHE = "glibc.malloc.tcache_count=0"


@contextlib.contextmanager
def no_tcache_env():
    """GLIBC_TUNABLES with NO_TCACHE added, for the processes started inside (Linux; elsewhere no change)."""
    old = os.environ.get("GLIBC_TUNABLES")
    if not sys.platform.startswith("linux") or (old and NO_TCACHE in old.split(":")):
        yield
        return
    os.environ["GLIBC_TUNABLES"] = f"{old}:{NO_TCACHE}" if old else NO_TCACHE
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GLIBC_TUNABLES", None)
        else:
            os.environ["GLIBC_TUNABLES"] = old


_ALLOCATOR_ENV = (
    "GLIBC_TUNABLES",
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_MAX_",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "LD_PRELOAD",
)


def process_settings() -> dict:
    """What this process ran under that can move a timing: CPUs it may run on, allocator settings."""
    import os

    try:
        affinity = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    env = {k: os.environ[k] for k in _ALLOCATOR_ENV if k in os.environ}
    conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF")
    if conf:
        env["PYTORCH_CUDA_ALLOC_CONF"] = conf
    if _fixed_thresholds:
        env["mmap_max"] = str(MMAP_MAX)
        env["trim_threshold"] = "never"
    allocator = "glibc malloc" + ("; " + ", ".join(f"{k}={v}" for k, v in sorted(env.items())) if env else "")
    return {"affinity": affinity, "allocator": allocator, "heap_reserve_bytes": _reserved}


def limit_address_space(extra_bytes: int) -> None:
    """Cap this process's address space at its current size plus extra_bytes: allocations past it fail with
    an out-of-memory error instead of exhausting a shared machine (CPU cases; no effect on CUDA memory)."""
    import psutil

    vms = psutil.Process().memory_info().vms
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vms + int(extra_bytes)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
