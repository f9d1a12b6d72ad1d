"""Neighborhood geometry of legacy NATTEN: which keys each query sees, and the RPB offset of each."""

from __future__ import annotations

from functools import lru_cache

import torch


@lru_cache(maxsize=256)
def _starts(length: int, kernel: int, dilation: int) -> tuple[int, ...]:
    # Each residue class mod dilation is its own sub-sequence; the window shifts inward at its borders.
    radius = kernel // 2
    starts = []
    for i in range(length):
        c, pos = i % dilation, i // dilation
        class_len = (length - c + dilation - 1) // dilation
        start = min(max(pos - radius, 0), class_len - kernel)
        starts.append(start * dilation + c)
    return tuple(starts)


def window_starts(
    length: int, kernel: int, dilation: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """First key index of each query's window on one axis, shape [length]."""
    return torch.tensor(_starts(length, kernel, dilation), dtype=torch.long, device=device)


def neighbor_index(
    length: int, kernel: int, dilation: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Key indices of each query's window on one axis, shape [length, kernel]."""
    steps = torch.arange(kernel, device=device) * dilation
    return window_starts(length, kernel, dilation, device)[:, None] + steps[None, :]


def rpb_index(length: int, kernel: int, dilation: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """RPB offset (key - query) / dilation + kernel - 1 of each neighbor, shape [length, kernel]."""
    nbr = neighbor_index(length, kernel, dilation, device)
    query = torch.arange(length, device=device)[:, None]
    return torch.div(nbr - query, dilation, rounding_mode="floor") + kernel - 1


def per_residue_class(fn, q, k, v, dilation: tuple[int, int]) -> tuple[torch.Tensor, str]:
    """Dilated NA as dilation-1 NA on each residue-class sub-grid of q, k, v [B, H, W, heads, D].

    fn(q, k, v) -> (out, kernel) runs dilation-1 NA on [n, h, w, heads, D]. Classes come in at most 4 shapes
    (ceil or floor rows x cols); the classes of one shape are stacked into the batch, one call per shape.
    """
    batch, height, width = q.shape[:3]
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    kernels = set()
    for rows in _class_groups(height, dilation[0]):
        for cols in _class_groups(width, dilation[1]):
            sub = [_classes(t, rows, cols, dilation) for t in (q, k, v)]
            n = batch * rows[1] * cols[1]
            res, kernel = fn(*(t.reshape(n, *t.shape[3:]) for t in sub))
            _classes(out, rows, cols, dilation).copy_(res.view(sub[0].shape))
            kernels.add(kernel)
    return out, "+".join(sorted(kernels))


def _class_groups(length: int, dilation: int) -> list[tuple[int, int, int]]:
    """Residue classes of one axis by length: (first class, number of classes, class length)."""
    long = length % dilation
    groups = [(0, long, length // dilation + 1)] if long else []
    return groups + [(long, dilation - long, length // dilation)]


def _classes(x: torch.Tensor, rows, cols, dilation: tuple[int, int]) -> torch.Tensor:
    """View [B, row classes, col classes, class rows, class cols, heads, D] of x [B, H, W, heads, D]."""
    (cy, ny, hy), (cx, nx, wx), (dh, dw) = rows, cols, dilation
    sb, sh, sw, sn, sd = x.stride()
    return x.as_strided(
        (x.shape[0], ny, nx, hy, wx, *x.shape[3:]),
        (sb, sh, sw, dh * sh, dw * sw, sn, sd),
        x.storage_offset() + cy * sh + cx * sw,
    )
