"""Exact neighborhood attention, RPB included, on torch's flex_attention with a neighborhood block mask."""

from __future__ import annotations

import warnings

import torch
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from natbench.attention._cache import tensor_cache
from natbench.attention.neighborhood import window_starts

BLOCK = 128  # flex_attention's default block size
ORDER = "tiles"
_compiled = None
_compile_failures: dict[tuple, str] = {}  # shape -> why compiling failed; that shape then runs eagerly


def _compiled_flex():
    global _compiled
    if _compiled is None:
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        _compiled = torch.compile(flex_attention, dynamic=False)
    return _compiled


def _neighborhood_block_mask(height, width, starts_y, kh, dh, mask_mod, device, block=BLOCK) -> BlockMask:
    """Block sparsity from the window geometry, without evaluating every query/key pair.

    create_block_mask evaluates mask_mod on all n^2 pairs (4.7 GB at 112x112); instead each query block
    gets the contiguous token range of the rows its windows can reach, and mask_mod is applied inside.
    """
    n = height * width
    sy = starts_y.cpu()
    ends = sy + (kh - 1) * dh
    lo, hi = [], []
    for first in range(0, n, block):
        rows = slice(first // width, (min(first + block, n) - 1) // width + 1)
        lo.append(int(sy[rows].min()) * width // block)  # with dilation, starts are not monotone
        hi.append(((int(ends[rows].max()) + 1) * width - 1) // block)
    lo, hi = torch.tensor(lo), torch.tensor(hi)
    counts = hi - lo + 1
    # One column per KV block, as create_block_mask makes (compiled flex checks the width); flex reads
    # only the first `counts` entries of each row.
    n_blocks = -(-n // block)
    indices = torch.minimum(lo[:, None] + torch.arange(n_blocks)[None, :], hi[:, None])
    return BlockMask.from_kv_blocks(
        counts.to(torch.int32)[None, None].to(device),
        indices.to(torch.int32)[None, None].to(device),
        BLOCK_SIZE=block,
        mask_mod=mask_mod,
        seq_lengths=(n, n),
    )


@tensor_cache(maxsize=32)
def _geometry(height: int, width: int, kernel: tuple[int, int], dilation: tuple[int, int], device: str):
    sy = window_starts(height, kernel[0], dilation[0], device)
    sx = window_starts(width, kernel[1], dilation[1], device)
    (kh, kw), (dh, dw) = kernel, dilation

    def mask_mod(b, h, q_idx, kv_idx):
        qy, qx, ky, kx = q_idx // width, q_idx % width, kv_idx // width, kv_idx % width
        oy, ox = ky - sy[qy], kx - sx[qx]
        in_y = (oy >= 0) & (oy <= (kh - 1) * dh) & (oy % dh == 0)
        in_x = (ox >= 0) & (ox <= (kw - 1) * dw) & (ox % dw == 0)
        return in_y & in_x

    block_mask = _neighborhood_block_mask(height, width, sy, kh, dh, mask_mod, device)
    return block_mask, mask_mod


TILE = (8, 16)  # tokens of one 128-token flex block in tile order: 8 rows x 16 columns


@tensor_cache(maxsize=32)
def _tiles(height: int, width: int, kernel, dilation, device: str, tile=TILE):
    """Tile order: tokens permuted so that each 128-token block is a th x tw tile of the map.

    A query tile's windows then reach a fixed number of key tiles whatever the map size, so the block mask
    is block-sparse with O(1) blocks per query block (row-major blocks reach ~k rows x width tokens).
    Returns perm [P] (map token of each position; N = padding), inv [N] (position of each map token),
    ys / xs [P] (coordinates, clamped for padding), valid [P], the block mask's kv counts / indices."""
    (kh, kw), (dh, dw), (th, tw) = kernel, dilation, tile
    ty, tx = -(-height // th), -(-width // tw)
    iy, ix = torch.arange(ty * th), torch.arange(tx * tw)
    # position p = ((tile_y * tx + tile_x) * th + row) * tw + col
    ys = iy.view(ty, 1, th, 1).expand(ty, tx, th, tw).reshape(-1)
    xs = ix.view(1, tx, 1, tw).expand(ty, tx, th, tw).reshape(-1)
    valid = (ys < height) & (xs < width)
    perm = torch.where(valid, ys * width + xs, height * width)
    inv = torch.empty(height * width, dtype=torch.long)
    inv[perm[valid]] = torch.nonzero(valid).flatten()
    ys, xs = ys.clamp(max=height - 1), xs.clamp(max=width - 1)
    sy, sx = window_starts(height, kh, dh), window_starts(width, kw, dw)

    def reach(starts, span, size, n_tiles):
        lo, hi = [], []
        for t in range(n_tiles):
            rows = starts[t * size : min((t + 1) * size, len(starts))]
            lo.append(int(rows.min()) // size)
            hi.append((int(rows.max()) + span) // size)
        return lo, hi

    ylo, yhi = reach(sy, (kh - 1) * dh, th, ty)
    xlo, xhi = reach(sx, (kw - 1) * dw, tw, tx)
    counts, indices = [], []
    n_blocks = ty * tx
    for a in range(ty):
        for b in range(tx):
            blocks = [r * tx + c for r in range(ylo[a], yhi[a] + 1) for c in range(xlo[b], xhi[b] + 1)]
            counts.append(len(blocks))
            indices.append(blocks + [blocks[-1]] * (n_blocks - len(blocks)))
    to = {"device": device}
    return (
        perm.to(**to),
        inv.to(**to),
        ys.to(**to),
        xs.to(**to),
        valid.to(**to),
        sy.to(**to),
        sx.to(**to),
        torch.tensor(counts, dtype=torch.int32, device=device),
        torch.tensor(indices, dtype=torch.int32, device=device),
    )


def _tile_block_mask(height, width, kernel, dilation, device):
    perm, inv, ys, xs, valid, sy, sx, counts, indices = _tiles(height, width, kernel, dilation, device)
    (kh, kw), (dh, dw) = kernel, dilation

    def mask_mod(b, h, q_idx, kv_idx):
        qy, qx, ky, kx = ys[q_idx], xs[q_idx], ys[kv_idx], xs[kv_idx]
        oy, ox = ky - sy[qy], kx - sx[qx]
        in_y = (oy >= 0) & (oy <= (kh - 1) * dh) & (oy % dh == 0)
        in_x = (ox >= 0) & (ox <= (kw - 1) * dw) & (ox % dw == 0)
        return in_y & in_x & valid[kv_idx]

    n = perm.numel()
    block_mask = BlockMask.from_kv_blocks(
        counts[None, None], indices[None, None], BLOCK_SIZE=BLOCK, mask_mod=mask_mod, seq_lengths=(n, n)
    )
    return block_mask, perm, inv, ys, xs


def _tile_rpb_score_mod(rpb, ys, xs, kernel, dilation):
    (kh, kw), (dh, dw) = kernel, dilation

    def score_mod(score, b, h, q_idx, kv_idx):
        # Compiled kernels evaluate masked pairs too: keep the lookup in bounds for every pair.
        dy = ((ys[kv_idx] - ys[q_idx]) // dh + kh - 1).clamp(0, 2 * kh - 2)
        dx = ((xs[kv_idx] - xs[q_idx]) // dw + kw - 1).clamp(0, 2 * kw - 2)
        return score + rpb[h, dy, dx]

    return score_mod


def _rpb_score_mod(rpb: torch.Tensor, width: int, kernel: tuple[int, int], dilation: tuple[int, int]):
    (kh, kw), (dh, dw) = kernel, dilation

    def score_mod(score, b, h, q_idx, kv_idx):
        # Compiled kernels evaluate masked pairs too: keep the lookup in bounds for every pair.
        dy = (kv_idx // width - q_idx // width) // dh + kh - 1
        dx = (kv_idx % width - q_idx % width) // dw + kw - 1
        dy = dy.clamp(0, 2 * kh - 2)
        dx = dx.clamp(0, 2 * kw - 2)
        return score + rpb[h, dy, dx]

    return score_mod


def na2d_flex(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    kernel_size: tuple[int, int],
    dilation: tuple[int, int],
    rpb: torch.Tensor | None,
    scale: float,
    compile: bool = True,
    order: str = ORDER,
) -> tuple[torch.Tensor, str]:
    """Returns the output and the kernel that ran ("flex-compiled" or "flex-eager").

    order: "tiles" (tokens permuted into 8x16 tiles: block-sparse mask, linear in tokens) or "rows"."""
    if (
        q.device.type == "cpu"
        and torch.is_grad_enabled()
        and any(t.requires_grad for t in (q, k, v, rpb) if t is not None)
    ):
        raise NotImplementedError(
            "torch's flex_attention has no backward on CPU; use backend 'tiled' or 'reference' for training on CPU"
        )
    b, height, width, heads, d = q.shape
    if order == "tiles":
        block_mask, perm, inv, ys, xs = _tile_block_mask(height, width, kernel_size, dilation, str(q.device))

        def to_tiles(t):  # [B, H, W, heads, D] -> [B, heads, P, D], a zero token for the padding
            flat = torch.cat([t.reshape(b, height * width, heads, d), t.new_zeros(b, 1, heads, d)], 1)
            return flat[:, perm].transpose(1, 2)

        qf, kf, vf = (to_tiles(t) for t in (q, k, v))
        score_mod = None
        if rpb is not None:
            score_mod = _tile_rpb_score_mod(rpb.to(q.dtype), ys, xs, kernel_size, dilation)
    elif order == "rows":
        block_mask, _ = _geometry(height, width, kernel_size, dilation, str(q.device))
        qf, kf, vf = (t.reshape(b, height * width, heads, d).transpose(1, 2) for t in (q, k, v))
        score_mod = None
        if rpb is not None:
            score_mod = _rpb_score_mod(rpb.to(q.dtype), width, kernel_size, dilation)
    else:
        raise ValueError(f"order must be 'tiles' or 'rows', got {order!r}")
    out, kernel = None, "flex-eager"
    key = (tuple(q.shape), q.dtype, str(q.device), kernel_size, dilation, rpb is not None, order)
    if compile and key not in _compile_failures:
        try:
            out = _compiled_flex()(qf, kf, vf, score_mod=score_mod, block_mask=block_mask, scale=scale)
            kernel = "flex-compiled"
        except Exception as exc:  # warn once per shape; last_kernel() says "flex-eager" from then on
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            _compile_failures[key] = reason
            warnings.warn(
                f"torch.compile(flex_attention) failed, running flex eagerly: {reason}", stacklevel=3
            )
    if out is None:
        out = flex_attention(qf, kf, vf, score_mod=score_mod, block_mask=block_mask, scale=scale)
    if order == "tiles":
        return out.transpose(1, 2)[:, inv].reshape(b, height, width, heads, d), kernel
    return out.transpose(1, 2).reshape(b, height, width, heads, d), kernel


def compile_failures() -> dict[tuple, str]:
    """Shapes whose compiled flex failed in this process, and why."""
    return dict(_compile_failures)
