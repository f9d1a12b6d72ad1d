"""asv: model forward latency, peak memory, parameters and MACs (NAT-Mini vs Swin-Tiny)."""

from __future__ import annotations

import torch

from benchmarks import asv_cases as cases


class ModelForwardCPU:
    params = (cases.MODELS, cases.MODEL_RESOLUTIONS)
    param_names = ["model", "resolution"]
    timeout = cases.TIMEOUT_S

    def setup(self, model, resolution):
        torch.manual_seed(0)
        self.fn = cases.model_call(model, resolution, "cpu")
        self.fn()  # warm-up (compiles flex kernels when NA runs on flex)

    def time_forward(self, model, resolution):
        self.fn()

    def track_peak_mem(self, model, resolution):
        return cases.peak_memory_bytes(self.fn, "cpu")

    track_peak_mem.unit = "bytes"


class ModelInfo:
    """Exact parameter count and MACs of one image (natbench.models.model_info, traced on the meta device)."""

    params = (cases.MODELS, cases.MODEL_RESOLUTIONS)
    param_names = ["model", "resolution"]
    timeout = cases.TIMEOUT_S

    def setup_cache(self):
        # once per run, not once per parameter set: tracing a model costs seconds
        from natbench.models import model_info

        return {(m, r): model_info(m, r) for m in cases.MODELS for r in cases.MODEL_RESOLUTIONS}

    def track_params(self, infos, model, resolution):
        return infos[model, resolution]["params"]

    track_params.unit = "parameters"

    def track_macs(self, infos, model, resolution):
        return infos[model, resolution]["macs"]

    track_macs.unit = "MACs"


class ModelForwardCUDA:
    params = (cases.MODELS, cases.MODEL_RESOLUTIONS, ["float16", "float32"])
    param_names = ["model", "resolution", "dtype"]
    timeout = cases.TIMEOUT_S

    def setup(self, model, resolution, dtype):
        cases.need_cuda()
        torch.manual_seed(0)
        self.fn = cases.model_call(model, resolution, "cuda", getattr(torch, dtype))

    def track_latency_ms(self, model, resolution, dtype):
        return cases.cuda_latency_ms(self.fn)

    track_latency_ms.unit = "ms"

    def track_peak_mem(self, model, resolution, dtype):
        self.fn()
        return cases.peak_memory_bytes(self.fn, "cuda")

    track_peak_mem.unit = "bytes"
