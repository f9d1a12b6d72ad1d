"""Neighborhood attention on a small map as ONE masked SDPA over all its tokens ("masked-sdpa").

Late NAT stages run NA on 14x14 and 7x7 maps, where a query's window is a quarter of the map or all of it.
There one SDPA call over every token of every image and head, with a cached [N, N] 0/-inf mask (RPB gathered
into it), costs fewer microseconds than cutting the map into tiles: the extra masked scores are cheaper than the
copies and the many small calls. Dilation is only a different mask. Memory grows as tokens squared, so the tiled
kernel calls this below a token bound only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from natbench.attention._cache import tensor_cache
from natbench.attention.neighborhood import neighbor_index, rpb_index


@tensor_cache(maxsize=64)
def _axis(length: int, kernel: int, dilation: int) -> tuple[torch.Tensor, torch.Tensor]:
    """allowed [L, L] (query i sees key j) and RPB offset [L, L] (clamped, valid where allowed)."""
    nbr = neighbor_index(length, kernel, dilation)
    ok = torch.zeros(length, length, dtype=torch.bool)
    ok.scatter_(1, nbr, True)
    off = torch.zeros(length, length, dtype=torch.long)
    off.scatter_(1, nbr, rpb_index(length, kernel, dilation))
    return ok, off


@tensor_cache(maxsize=64)
def _geometry(height, width, kernel, dilation, device: str) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """allowed [N, N], flat RPB index [N, N] into rpb.flatten(1), and whether every pair is allowed."""
    (kh, kw), (dh, dw) = kernel, dilation
    oky, offy = _axis(height, kh, dh)
    okx, offx = _axis(width, kw, dw)
    n = height * width
    ok = (oky[:, None, :, None] & okx[None, :, None, :]).reshape(n, n)
    idx = (offy[:, None, :, None] * (2 * kw - 1) + offx[None, :, None, :]).reshape(n, n)
    return ok.to(device), idx.to(device), bool(ok.all())


@tensor_cache(maxsize=64)
def _neg(ok: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill_(~ok, float("-inf"))


_RPB_MASKS: dict = {}  # id(rpb) -> (rpb, version, dtype, idx, mask): inference reuses the gathered bias


def _rpb_mask(rpb, ok, idx, dense, dtype):
    """[1, heads, N, N] RPB bias with -inf outside the windows; cached while rpb is unchanged and gradients off."""
    cacheable = not torch.is_grad_enabled() and not rpb.is_inference()
    if cacheable:
        hit = _RPB_MASKS.get(id(rpb))
        if hit and hit[0] is rpb and hit[1] == rpb._version and hit[2] == dtype and hit[3] is idx:
            return hit[4]
    mask = rpb.to(dtype).flatten(1)[:, idx]  # [heads, N, N]
    if not dense:
        mask = mask.masked_fill(~ok, float("-inf"))
    mask = mask[None]
    if cacheable:
        if len(_RPB_MASKS) >= 256:
            _RPB_MASKS.clear()
        _RPB_MASKS[id(rpb)] = (rpb, rpb._version, dtype, idx, mask)
    return mask


def na2d_masked(q, k, v, kernel_size, dilation, rpb, scale):
    """[B, H, W, heads, D] (any strides) -> (out contiguous, "masked-sdpa")."""
    b, height, width, heads, d = q.shape
    n = height * width
    ok, idx, dense = _geometry(height, width, tuple(kernel_size), tuple(dilation), str(q.device))
    if rpb is not None:
        mask = _rpb_mask(rpb, ok, idx, dense, q.dtype)
    else:
        mask = None if dense else _neg(ok, q.dtype)[None, None]
    qs, ks, vs = (t.reshape(b, n, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scale)
    return out.transpose(1, 2).reshape(b, height, width, heads, d), "masked-sdpa"
