"""Typed entry points of natbench's attention ops; the backends live behind them.

Tensors use natten's layout: [batch, height, width, heads, head_dim].
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch

from natbench.attention import _validate as val
from natbench.attention.full import full_attention
from natbench.attention.reference import na2d_reference
from natbench.attention.window import window_attention

# fn(q, k, v, kernel_size, dilation, rpb, scale) -> (out, kernel that ran)
NAFunction = Callable[..., tuple[torch.Tensor, str]]


@dataclass(frozen=True)
class Backend:
    name: str
    fn: NAFunction
    supports_rpb: bool
    why_unavailable: Callable[[torch.device, torch.dtype], str | None]
    description: str
    supports_backward: bool = True


_BACKENDS: dict[str, Backend] = {}
# Fastest exact backend first; `auto` takes the first that can run the arguments.
AUTO_ORDER: dict[str, list[str]] = {
    "cuda": ["natten", "flex"],
    "cpu": ["fused", "tiled", "flex", "reference"],
}
_state = threading.local()


def register_backend(backend: Backend) -> None:
    _BACKENDS[backend.name] = backend


def backends() -> dict[str, Backend]:
    return dict(_BACKENDS)


def last_kernel() -> str | None:
    """The kernel that ran in this thread's last neighborhood_attention_2d call (e.g. "natten:flex-fna")."""
    return getattr(_state, "kernel", None)


def unavailable_reason(
    backend: str,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    rpb: bool = False,
    grad: bool = False,
) -> str | None:
    """None if `backend` can run here with these arguments (`grad`: autograd needs its backward), else why not."""
    if backend not in _BACKENDS:
        return f"unknown backend {backend!r}; choose one of {sorted(_BACKENDS)} or 'auto'"
    b = _BACKENDS[backend]
    if rpb and not b.supports_rpb:
        return f"backend {backend!r} has no relative positional bias; use 'fused', 'tiled', 'flex' or 'reference' (or 'auto')"
    if grad and not b.supports_backward:
        return (
            f"backend {backend!r} has no backward; use 'tiled' or 'auto' for training, "
            "or run under torch.no_grad() / torch.inference_mode()"
        )
    return b.why_unavailable(torch.device(device), dtype)


def resolve_backend(
    device: torch.device | str, dtype: torch.dtype, rpb: bool, backend: str = "auto", grad: bool = False
) -> str:
    """The backend `backend` names for these arguments: itself, or auto's choice. Raises ValueError if none."""
    device = torch.device(device)
    if backend != "auto":
        reason = unavailable_reason(backend, device, dtype, rpb, grad)
        if reason is not None:
            raise ValueError(reason)
        return backend
    reasons = []
    for name in AUTO_ORDER.get(device.type, ["flex", "reference"]):
        if name in _BACKENDS:
            reason = unavailable_reason(name, device, dtype, rpb, grad)
            if reason is None:
                return name
            reasons.append(f"{name}: {reason}")
    raise ValueError(
        f"no neighborhood attention backend can run on {device} with {dtype}: " + "; ".join(reasons)
    )


def neighborhood_attention_2d(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: int | tuple[int, int],
    dilation: int | tuple[int, int] = 1,
    rpb: torch.Tensor | None = None,
    scale: float | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """2-D neighborhood attention with legacy NATTEN semantics (windows shift inward at borders).

    rpb: relative positional bias [heads, 2*kh-1, 2*kw-1], indexed by (key - query) / dilation + k - 1.
    backend: "auto", or one of `backends()`; `last_kernel()` says what ran.
    """
    val.check_qkv(q, k, v)
    if not isinstance(backend, str) or (backend != "auto" and backend not in _BACKENDS):
        raise ValueError(f"unknown backend {backend!r}; choose one of {sorted(_BACKENDS)} or 'auto'")
    ks, dil = val.check_neighborhood(q, kernel_size, dilation)
    val.check_rpb(rpb, q, ks)
    if rpb is not None and rpb.dtype != q.dtype and rpb.dtype != torch.float32:
        raise ValueError(f"rpb must be float32 or the query's dtype {q.dtype}, got {rpb.dtype}")
    grad = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (q, k, v, rpb))
    name = resolve_backend(q.device, q.dtype, rpb is not None, backend, grad)
    out, kernel = _BACKENDS[name].fn(q, k, v, ks, dil, rpb, val.default_scale(q, scale))
    _state.kernel = f"{name}:{kernel}"
    return out


def window_attention_2d(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window_size: int | tuple[int, int],
    shift: int | tuple[int, int] = 0,
    rpb: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    """Swin window attention; with `shift` > 0, Swin's shifted windows and attention mask.

    rpb: [heads, 2*wh-1, 2*ww-1] indexed by (query - key) + w - 1 as in Swin
    (`rpb_from_timm_table` converts timm's `relative_position_bias_table`).
    """
    val.check_qkv(q, k, v)
    win, sh = val.pair(window_size, "window_size"), val.pair(shift, "shift")
    height, width = q.shape[1:3]
    if win[0] < 1 or win[1] < 1 or height % win[0] or width % win[1]:
        raise ValueError(
            f"the feature map {height}x{width} must be a multiple of window_size {win[0]}x{win[1]}; "
            "pad the map or pick a window that divides it"
        )
    if not (0 <= sh[0] < win[0] and 0 <= sh[1] < win[1]):
        raise ValueError(
            f"shift must be in [0, window_size), got {sh} for window {win}; Swin uses window_size // 2"
        )
    val.check_rpb(rpb, q, win, what="window_size")
    return window_attention(q, k, v, win, sh, rpb, val.default_scale(q, scale))


def full_attention_2d(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float | None = None
) -> torch.Tensor:
    """Global self attention over all height * width tokens (SDPA)."""
    val.check_qkv(q, k, v)
    return full_attention(q, k, v, val.default_scale(q, scale))


def _reference(q, k, v, ks, dil, rpb, scale):
    return na2d_reference(q, k, v, ks, dil, rpb, scale), "gather"


register_backend(
    Backend(
        "reference",
        _reference,
        True,
        lambda device, dtype: None,
        "explicit gather of every neighbour and a plain softmax; the oracle",
    )
)
