"""Case factories for sweep rows the claims need (targets "natbench.claims.cases:<name>").

- na_layers: two consecutive NA layers (qkv linear, NA with optional RPB, output projection), as DiNAT Fig. I
  compared them, at the spec's kernel_size / dilation / backend.
- swin_layers: a regular and a shifted Swin window-attention layer (same layer parts). Swin's rule: a map no
  larger than the window is one window, unshifted. Padding to a multiple of the window happens once, outside the
  timed call.
- explicit_attention: self attention with an explicit softmax that stores its n x n weights (what the
  complexity table's memory column describes; fused SDPA never stores them).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_RES, DEFAULT_K, DEFAULT_HEADS, DEFAULT_HEAD_DIM = 56, 7, 4, 32


def explicit_softmax_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[B, H, W, heads, d] global attention through a stored [B, heads, n, n] weight matrix."""
    b, h, w, heads, d = q.shape
    q, k, v = (t.reshape(b, h * w, heads, d).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax((q * d**-0.5) @ k.transpose(-2, -1), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(b, h, w, heads, d)


class _AttentionLayer(nn.Module):
    """qkv projection, an attention function on [B, H, W, heads, d], output projection."""

    def __init__(self, heads: int, head_dim: int, kernel: int, rpb: bool, attend):
        super().__init__()
        dim = heads * head_dim
        self.heads, self.head_dim, self.attend = heads, head_dim, attend
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.rpb = nn.Parameter(torch.randn(heads, 2 * kernel - 1, 2 * kernel - 1) * 0.02) if rpb else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        q, k, v = self.qkv(x).view(b, h, w, 3, self.heads, self.head_dim).unbind(3)
        return self.proj(self.attend(q, k, v, self.rpb).reshape(b, h, w, -1))


def _shape(spec):
    res = spec.resolution or DEFAULT_RES
    return res, spec.kernel_size or DEFAULT_K, spec.heads or DEFAULT_HEADS, spec.head_dim or DEFAULT_HEAD_DIM


def _runner(layers: nn.Module, x: torch.Tensor, spec, device, dtype, kernel: str):
    layers = layers.to(device=device, dtype=dtype).train(spec.mode == "training")
    x = x.to(device=device, dtype=dtype)
    if spec.mode == "training":
        x.requires_grad_(True)

        def step():
            layers.zero_grad(set_to_none=True)
            layers(x).float().sum().backward()
    else:

        def step():
            return layers(x)

    macs = None
    return step, {"kernel": kernel, "params": sum(p.numel() for p in layers.parameters()), "macs": macs}


def na_layers(spec, device, dtype):
    from natbench import attention
    from natbench.measure.case import Unsupported

    res, k, heads, hd = _shape(spec)
    dil = spec.dilation or 1
    if k * dil > res:
        raise Unsupported(f"kernel_size * dilation = {k * dil} is larger than the {res}x{res} map")
    try:
        backend = attention.resolve_backend(device, dtype, bool(spec.rpb), spec.backend or "auto")
    except ValueError as exc:
        raise Unsupported(str(exc)) from None

    def attend(q, key, v, rpb):
        return attention.neighborhood_attention_2d(q, key, v, k, dil, rpb=rpb, backend=backend)

    layers = nn.Sequential(*(_AttentionLayer(heads, hd, k, bool(spec.rpb), attend) for _ in range(2)))
    x = torch.randn(spec.batch, res, res, heads * hd)
    with torch.no_grad():
        layers.to(device=device, dtype=dtype)(x.to(device=device, dtype=dtype))
    return _runner(layers, x, spec, device, dtype, f"layers:{attention.last_kernel()}")


def swin_layers(spec, device, dtype):
    from natbench import attention

    res, k, heads, hd = _shape(spec)
    window = min(k, res)
    shift = window // 2 if res > window else 0  # Swin: a map no larger than the window is not shifted
    side = -(-res // window) * window

    def attend_with(shift_by):
        def attend(q, key, v, rpb):
            return attention.window_attention_2d(q, key, v, window, shift=shift_by, rpb=rpb)

        return attend

    layers = nn.Sequential(
        _AttentionLayer(heads, hd, window, bool(spec.rpb), attend_with(0)),
        _AttentionLayer(heads, hd, window, bool(spec.rpb), attend_with(shift)),
    )
    x = F.pad(torch.randn(spec.batch, res, res, heads * hd), (0, 0, 0, side - res, 0, side - res))
    kernel = f"layers:sdpa:window+{'shifted' if shift else 'unshifted'}" + (
        "" if side == res else f"+pad{side}"
    )
    return _runner(layers, x, spec, device, dtype, kernel)


def explicit_attention(spec, device, dtype):
    res, _, heads, hd = _shape(spec)
    shape = (spec.batch, res, res, heads, hd)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    if spec.mode == "training":
        for t in (q, k, v):
            t.requires_grad_(True)

        def step():
            return torch.autograd.grad(explicit_softmax_attention(q, k, v).sum(), (q, k, v))

        return step, {"kernel": "explicit-softmax"}
    return (lambda: explicit_softmax_attention(q, k, v)), {"kernel": "explicit-softmax"}
