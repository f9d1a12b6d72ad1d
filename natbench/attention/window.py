"""Swin window attention (shifted or not) on natten's layout, through SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from natbench.attention._cache import tensor_cache


@tensor_cache(maxsize=64)
def _relative_index(wh: int, ww: int) -> torch.Tensor:
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :]  # Swin's convention: query minus key
    return (rel[0] + wh - 1) * (2 * ww - 1) + (rel[1] + ww - 1)  # [T, T]


@tensor_cache(maxsize=64)
def _shift_bias(height, width, window, shift, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Swin's shifted-window mask as an additive bias, [nW, 1, T, T]; cached like timm's attn_mask buffer."""
    blocked = _shift_mask(height, width, window, shift).to(device)
    bias = torch.zeros(blocked.shape, dtype=dtype, device=device).masked_fill(blocked, float("-inf"))
    return bias[:, None]


def _shift_mask(height: int, width: int, window: tuple[int, int], shift: tuple[int, int]) -> torch.Tensor:
    # Region ids as in Swin: tokens rolled across the border must not attend to each other.
    region = torch.zeros(height, width, dtype=torch.long)
    label = 0
    for hs in ((0, -window[0]), (-window[0], -shift[0]), (-shift[0], None)):
        for ws in ((0, -window[1]), (-window[1], -shift[1]), (-shift[1], None)):
            region[slice(*hs), slice(*ws)] = label
            label += 1
    wins = _partition(region[None, :, :, None, None], window).flatten(1)  # [nW, T]
    return wins[:, :, None] != wins[:, None, :]  # True where masked, [nW, T, T]


def _partition(x: torch.Tensor, window: tuple[int, int]) -> torch.Tensor:
    """[B, H, W, heads, D] -> [B * nW, wh * ww, heads, D]."""
    b, h, w, heads, d = x.shape
    wh, ww = window
    x = x.view(b, h // wh, wh, w // ww, ww, heads, d).permute(0, 1, 3, 2, 4, 5, 6)
    return x.reshape(-1, wh * ww, heads, d)


def _merge(x: torch.Tensor, window: tuple[int, int], b: int, h: int, w: int) -> torch.Tensor:
    wh, ww = window
    heads, d = x.shape[-2:]
    x = x.view(b, h // wh, w // ww, wh, ww, heads, d).permute(0, 1, 3, 2, 4, 5, 6)
    return x.reshape(b, h, w, heads, d)


def window_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    window: tuple[int, int],
    shift: tuple[int, int],
    rpb: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    b, h, w, heads, _ = q.shape
    shifted = shift[0] > 0 or shift[1] > 0
    if shifted:
        q, k, v = (torch.roll(t, shifts=(-shift[0], -shift[1]), dims=(1, 2)) for t in (q, k, v))
    qw, kw, vw = (_partition(t, window).transpose(1, 2) for t in (q, k, v))  # [B*nW, heads, T, D]
    mask = None
    if rpb is not None:
        idx = _relative_index(*window).to(q.device)
        mask = rpb.flatten(1)[:, idx].to(q.dtype)[None]  # [1, heads, T, T]
    if shifted:
        neg = _shift_bias(h, w, window, shift, q.dtype, q.device)  # [nW, 1, T, T]
        if b > 1:  # windows are batch-major: [B*nW, 1, T, T] (broadcast over heads, no copy per head)
            neg = neg.repeat(b, 1, 1, 1)
        mask = neg if mask is None else mask + neg
    out = F.scaled_dot_product_attention(qw, kw, vw, attn_mask=mask, scale=scale)
    out = _merge(out.transpose(1, 2), window, b, h, w)
    if shifted:
        out = torch.roll(out, shifts=shift, dims=(1, 2))
    return out


def rpb_from_timm_table(table: torch.Tensor, window: int | tuple[int, int]) -> torch.Tensor:
    """timm/Swin `relative_position_bias_table` [(2wh-1)(2ww-1), heads] -> [heads, 2wh-1, 2ww-1]."""
    wh, ww = (window, window) if isinstance(window, int) else window
    return table.t().reshape(table.shape[1], 2 * wh - 1, 2 * ww - 1)
