"""asv: attention op latency and memory, neighborhood attention per backend vs window and full attention."""

from __future__ import annotations

import torch

from benchmarks import asv_cases as cases


class NeighborhoodAttentionCPU:
    params = (cases.NA_BACKENDS, cases.KERNELS, cases.RESOLUTIONS)
    param_names = ["backend", "kernel_size", "resolution"]
    timeout = cases.TIMEOUT_S

    def setup(self, backend, kernel_size, resolution):
        self.fn = cases.attention_call("na", backend, resolution, kernel_size, "cpu")
        with torch.inference_mode():
            self.fn()  # compile / warm caches outside the timed calls

    def time_forward(self, backend, kernel_size, resolution):
        with torch.inference_mode():
            self.fn()

    def track_peak_mem(self, backend, kernel_size, resolution):
        with torch.inference_mode():
            return cases.peak_memory_bytes(self.fn, "cpu")

    track_peak_mem.unit = "bytes"


class WindowAttentionCPU:
    params = (cases.KERNELS, cases.RESOLUTIONS)
    param_names = ["window_size", "resolution"]
    timeout = cases.TIMEOUT_S

    def setup(self, window_size, resolution):
        self.fn = cases.attention_call("window", None, resolution, window_size, "cpu")
        with torch.inference_mode():
            self.fn()

    def time_forward(self, window_size, resolution):
        with torch.inference_mode():
            self.fn()

    def track_peak_mem(self, window_size, resolution):
        with torch.inference_mode():
            return cases.peak_memory_bytes(self.fn, "cpu")

    track_peak_mem.unit = "bytes"


class FullAttentionCPU:
    params = (cases.RESOLUTIONS,)
    param_names = ["resolution"]
    timeout = cases.TIMEOUT_S

    def setup(self, resolution):
        self.fn = cases.attention_call("full", None, resolution, 1, "cpu")
        with torch.inference_mode():
            self.fn()

    def time_forward(self, resolution):
        with torch.inference_mode():
            self.fn()

    def track_peak_mem(self, resolution):
        with torch.inference_mode():
            return cases.peak_memory_bytes(self.fn, "cpu")

    track_peak_mem.unit = "bytes"


class AttentionCUDA:
    """CUDA-event latency (asv's wall-clock timer would include launch overhead, not kernel time)."""

    params = (
        ["na:natten", "na:flex", "window", "full"],
        cases.KERNELS,
        cases.CUDA_RESOLUTIONS,
        ["float16", "float32"],
    )
    param_names = ["op", "kernel_size", "resolution", "dtype"]
    timeout = cases.TIMEOUT_S

    def setup(self, op, kernel_size, resolution, dtype):
        cases.need_cuda()
        target, _, backend = op.partition(":")
        self.fn = cases.attention_call(
            target, backend or None, resolution, kernel_size, "cuda", getattr(torch, dtype)
        )

    def track_latency_ms(self, op, kernel_size, resolution, dtype):
        with torch.inference_mode():
            return cases.cuda_latency_ms(self.fn)

    track_latency_ms.unit = "ms"

    def track_peak_mem(self, op, kernel_size, resolution, dtype):
        with torch.inference_mode():
            self.fn()
            return cases.peak_memory_bytes(self.fn, "cuda")

    track_peak_mem.unit = "bytes"
