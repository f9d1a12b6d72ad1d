"""Argument checks shared by every attention op: one ValueError that names the fix."""

from __future__ import annotations

import torch

Pair = tuple[int, int]


def pair(value: int | tuple[int, int], name: str) -> Pair:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    for name, t in (("query", q), ("key", k), ("value", v)):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() != 5:
            raise ValueError(
                f"{name} must be 5-D [batch, height, width, heads, head_dim] (natten's layout), "
                f"got shape {tuple(t.shape)}"
            )
    if q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            f"query, key and value must have the same shape, got {tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise ValueError(f"query, key and value must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.device != k.device or q.device != v.device:
        raise ValueError(
            f"query, key and value must be on one device, got {q.device}, {k.device}, {v.device}"
        )
    if not q.is_floating_point():
        raise ValueError(f"attention needs floating-point tensors, got {q.dtype}")


def check_neighborhood(q: torch.Tensor, kernel_size: int | Pair, dilation: int | Pair) -> tuple[Pair, Pair]:
    ks, dil = pair(kernel_size, "kernel_size"), pair(dilation, "dilation")
    height, width = q.shape[1], q.shape[2]
    for axis, k, d, length in (("height", ks[0], dil[0], height), ("width", ks[1], dil[1], width)):
        if k < 1 or k % 2 == 0:
            raise ValueError(
                f"kernel_size must be odd and positive (legacy NATTEN semantics), got {k}; use {k + 1 if k > 0 else 1}"
            )
        if d < 1:
            raise ValueError(f"dilation must be >= 1, got {d}")
        if k * d > length:
            raise ValueError(
                f"kernel_size * dilation = {k} * {d} = {k * d} is larger than the feature map's {axis} {length}; "
                f"use a smaller kernel or dilation, or pad the map to at least {k * d} (NatModel does this)"
            )
    return ks, dil


def check_rpb(rpb: torch.Tensor | None, q: torch.Tensor, window: Pair, what: str = "kernel_size") -> None:
    if rpb is None:
        return
    heads = q.shape[3]
    expected = (heads, 2 * window[0] - 1, 2 * window[1] - 1)
    if not isinstance(rpb, torch.Tensor) or tuple(rpb.shape) != expected:
        got = tuple(rpb.shape) if isinstance(rpb, torch.Tensor) else type(rpb).__name__
        raise ValueError(f"rpb must have shape [heads, 2*{what}-1, 2*{what}-1] = {list(expected)}, got {got}")
    if rpb.device != q.device:
        raise ValueError(f"rpb must be on the query's device {q.device}, got {rpb.device}")


def default_scale(q: torch.Tensor, scale: float | None) -> float:
    return q.shape[-1] ** -0.5 if scale is None else float(scale)
