"""Peak memory of a case: ONE definition, the same on CPU and CUDA.

    peak_mem_bytes = (memory the case's inputs and weights hold once built)
                   + (the most memory one steady-state call needs above what is resident just before it)

Counted: inputs, weights, buffers the builder makes, and everything one call allocates at its high-water
mark (activations, outputs, workspaces; for training the parameter grads, freed before the measured call).
Not counted: imports and torch's runtime (thread pools, lazily initialised kernels: primed first), state
created during warm-up and kept between calls (compiled code, caches, allocator pools), and whatever the
timed calls left behind. The measured call is one more call after the timed ones (its own pass: it never
disturbs a timed call), in a fresh process (natbench.measure.isolate) that ran nothing before.

CUDA: torch.cuda.memory_allocated after building minus before, plus max_memory_allocated during the call
minus memory_allocated just before it (allocator bytes, not the caching allocator's reserve).
CPU: the same with RSS; the high-water mark is reset through /proc/self/clear_refs (Linux >= 4.0) after
glibc's malloc_trim has returned the freed heap pages, so that their reuse by the call counts. Without that
reset, ru_maxrss (the process's lifetime peak) minus the baseline is reported, an upper bound.
"""

from __future__ import annotations

import resource
import sys

import torch

_STATUS = "/proc/self/status"


def current_rss() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _vm_hwm() -> int | None:
    try:
        with open(_STATUS) as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # 5: reset the peak RSS (Linux >= 4.0)
        return _vm_hwm() is not None
    except OSError:
        return False


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so that the measured call's reuse of memory freed during
    warm-up shows up as RSS growth again."""
    try:
        import ctypes

        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _prime_cpu_runtime() -> None:
    """Start torch's thread pool and kernels' lazy state (tens of MB) so that they count as baseline."""
    a = torch.randn(256, 256)
    torch.nn.functional.scaled_dot_product_attention(a[None, None], a[None, None], a[None, None]).sum().item()


def _ru_maxrss() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


class PeakMemory:
    """baseline() before inputs exist, built() after, reset_peak() after warm-up, peak_increase() after
    the measured call."""

    def __init__(self, device: torch.device | str, stats=None):
        """stats: the GPU memory-stats source (synchronize, reset_peak_memory_stats, memory_allocated,
        max_memory_allocated, each taking the device); torch.cuda by default, a stand-in in CPU tests."""
        self.device = torch.device(device)
        self.base = self._built = self._before_call = 0
        self._hwm_reset = False
        self._gpu = stats if stats is not None else (torch.cuda if self.device.type == "cuda" else None)

    def baseline(self) -> None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            self._gpu.reset_peak_memory_stats(self.device)
            self.base = self._gpu.memory_allocated(self.device)
            self._hwm_reset = True
        else:
            _prime_cpu_runtime()
            self.base = current_rss()
        self._built = self.base

    def built(self) -> None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            self._built = self._gpu.memory_allocated(self.device)
        else:
            self._built = current_rss()

    def reset_peak(self) -> None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            self._gpu.reset_peak_memory_stats(self.device)
            self._before_call = self._gpu.memory_allocated(self.device)
        else:
            _malloc_trim()
            self._hwm_reset = _reset_hwm()
            self._before_call = current_rss()

    def peak_increase(self) -> int:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            hwm = self._gpu.max_memory_allocated(self.device)
        else:
            hwm = _vm_hwm() if self._hwm_reset else None
        if hwm is None:
            return max(0, _ru_maxrss() - self.base)
        return max(0, self._built - self.base) + max(0, hwm - self._before_call)

    @property
    def method(self) -> str:
        if self._gpu is not None:
            return "cuda allocated: built + max_memory_allocated of one call"
        return "rss: built + VmHWM of one call" if self._hwm_reset else "ru_maxrss - baseline"


# glibc serves every allocation above its mmap threshold (at most 32 MiB) with fresh pages and returns them on
# free, so a call that makes large temporaries faults them in again every time: 52,889 faults per call for
# shifted window attention at 336x336, ~1.8 us each on this VM, 190 ms against 87 ms without them, and the
# fault cost drifts with the host's memory pressure (window attention ran 1.74x slower an hour later while
# the matmul calibration moved 1.6 %). Case processes therefore take every block from the heap (no mmap)
# and never trim it: after warm-up a call reuses resident pages, as torch's caching allocator does on CUDA.
# Peak memory is unaffected: reset_peak() trims explicitly (malloc_trim ignores the threshold).
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


_ALLOCATOR_ENV = (
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
    return {"affinity": affinity, "allocator": allocator}


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
