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
