"""model_info: exact parameter count and MACs of one image, next to the paper's figures."""

from __future__ import annotations

from typing import Any
from unittest import mock

import torch
from torch import nn

from natbench.models.registry import create_model, get_entry


def _conv_macs(module: nn.Conv2d, out: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return out[0].numel() * (module.in_channels // module.groups) * kh * kw


def _same_shape(self, x: torch.Tensor) -> torch.Tensor:
    return x


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of model(x) for ONE image: every Conv2d and Linear, plus the attention products.

    Neighborhood attention: QK and AV each cost tokens * k^2 * channels (maps as padded for the op).
    Swin window attention: QK and AV each cost tokens * window^2 * channels. Norms, activations, softmax,
    biases and pooling are not counted (the papers' fvcore convention).
    """
    from timm.models.swin_transformer import WindowAttention

    from natbench.models.layers import NeighborhoodAttention

    batch = x.shape[0]
    total = [0]

    def hook(module, inputs, out):
        if isinstance(module, nn.Conv2d):
            total[0] += _conv_macs(module, out) * batch
        elif isinstance(module, nn.Linear):
            total[0] += out.numel() // out.shape[-1] * module.in_features * module.out_features
        elif isinstance(module, NeighborhoodAttention):
            _, h, w, c = inputs[0].shape
            total[0] += 2 * batch * h * w * module.kernel_size**2 * c
            # q, k, v run as one fused GEMM that bypasses the three Linears' hooks
            total[0] += batch * h * w * c * 3 * module.query.out_features
        elif isinstance(module, WindowAttention):
            windows, n, c = inputs[0].shape
            total[0] += 2 * windows * n * n * c

    kinds = (nn.Conv2d, nn.Linear, NeighborhoodAttention, WindowAttention)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    try:
        # NA's MACs come from its input's shape (the hook), so its output need only have that shape: running
        # the op on the meta device took ~0.4 s per NAT model
        with torch.no_grad(), mock.patch.object(NeighborhoodAttention, "forward", _same_shape):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total[0] // batch


def model_info(name: str, resolution: int = 224, **overrides: Any) -> dict[str, Any]:
    """name, family, params (exact), macs (one image, 1000 classes), paper_params, paper_gmacs, resolution.

    overrides: create_model overrides of the architecture (e.g. kernel_size) the count must follow.

    Built and traced on the meta device: no weights are initialised and nothing is computed, only shapes.
    """
    entry = get_entry(name)
    if not isinstance(resolution, int) or resolution < 32:
        raise ValueError(f"resolution must be an int >= 32, got {resolution!r}")
    overrides = dict(overrides)
    if entry.timm_name is None:
        overrides["attention_backend"] = "reference"
    elif entry.family == "swin" and resolution != 224:
        overrides["img_size"] = resolution
    with torch.device("meta"):
        model = create_model(name, **overrides).eval()
    params = sum(p.numel() for p in model.parameters())
    # outside the device context: its function mode intercepted every op (~3x slower) and meta in, meta out
    macs = count_macs(model, torch.empty(1, 3, resolution, resolution, device="meta"))
    return {
        "name": name,
        "family": entry.family,
        "params": int(params),
        "macs": int(macs),
        "paper_params": entry.paper_params,
        # the paper's table is for the default architecture at 224x224 only
        "paper_gmacs": entry.paper_gmacs
        if resolution == 224 and not overrides.keys() - {"attention_backend", "img_size"}
        else None,
        "resolution": resolution,
    }
