"""Peak memory of a case above the process's baseline: CUDA allocator peak, or CPU peak RSS.

Measure in a fresh process (natbench.measure.isolate). CUDA: torch.cuda.max_memory_allocated during one
steady-state call (after warm-up) minus what was allocated before the case built its inputs. CPU: what building
the case added to RSS (inputs, weights) plus the RSS high-water mark of one steady-state call above the RSS just
before it; on Linux the high-water mark is reset through /proc/self/clear_refs, so pages first touched during
warm-up (library code, compilation) are left out, and glibc's malloc_trim first returns the heap pages warm-up
freed, so that their reuse counts. Without that reset, ru_maxrss (the process's lifetime peak)
minus the baseline is reported, an upper bound.
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
        else:
            _prime_cpu_runtime()
            self.base = current_rss()
        self._built = self.base

    def built(self) -> None:
        if self._gpu is None:
            self._built = current_rss()

    def reset_peak(self) -> None:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            self._gpu.reset_peak_memory_stats(self.device)
        else:
            _malloc_trim()
            self._hwm_reset = _reset_hwm()
            self._before_call = current_rss()

    def peak_increase(self) -> int:
        if self._gpu is not None:
            self._gpu.synchronize(self.device)
            return max(0, self._gpu.max_memory_allocated(self.device) - self.base)
        hwm = _vm_hwm() if self._hwm_reset else None
        if hwm is None:
            return max(0, _ru_maxrss() - self.base)
        return max(0, self._built - self.base) + max(0, hwm - self._before_call)

    @property
    def method(self) -> str:
        if self._gpu is not None:
            return "torch.cuda.max_memory_allocated"
        return "rss: built + VmHWM of one call" if self._hwm_reset else "ru_maxrss - baseline"


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
