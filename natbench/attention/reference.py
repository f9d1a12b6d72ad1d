"""The oracle: gather every neighbour explicitly and take a plain softmax. Slow on purpose."""

from __future__ import annotations

import torch

from natbench.attention.neighborhood import neighbor_index, rpb_index


def na2d_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int],
    rpb: torch.Tensor | None,
    scale: float,
) -> torch.Tensor:
    out_dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    _, height, width, _, _ = q.shape
    (kh, kw), (dh, dw) = kernel_size, dilation
    rows = neighbor_index(height, kh, dh, q.device)  # [H, kh]
    cols = neighbor_index(width, kw, dw, q.device)  # [W, kw]
    # keys[b, y, x, i, j, head, d] = k[b, rows[y, i], cols[x, j], head, d]
    ridx = rows[:, None, :, None].expand(height, width, kh, kw)
    cidx = cols[None, :, None, :].expand(height, width, kh, kw)
    keys = k[:, ridx, cidx]  # [B, H, W, kh, kw, heads, D]
    values = v[:, ridx, cidx]
    scores = torch.einsum("byxhd,byxijhd->byxhij", q * scale, keys)
    if rpb is not None:
        ry = rpb_index(height, kh, dh, q.device)[:, None, :, None].expand(height, width, kh, kw)
        rx = rpb_index(width, kw, dw, q.device)[None, :, None, :].expand(height, width, kh, kw)
        bias = rpb.float()[:, ry, rx]  # [heads, H, W, kh, kw]
        scores = scores + bias.permute(1, 2, 0, 3, 4)[None]
    probs = scores.flatten(-2).softmax(-1).view_as(scores)
    out = torch.einsum("byxhij,byxijhd->byxhd", probs, values)
    return out.to(out_dtype)
