"""Exact neighborhood attention on CPU with linear memory, through SDPA on strided views ("tiled").

Queries are cut into tiles of th rows x tw columns. A tile's keys are th + 2r rows of a column strip of
tw + 2r columns (the tile plus a halo of r on each side). Keys and values are copied once into such strips,
laid out [batch, strip, row, column, heads, dim] with a fixed number of rows per strip; the halos of
consecutive tiles are then overlapping row ranges at a fixed stride, so one SDPA call covers every interior
tile of a run of strips through a strided view and one broadcast 0/-inf (+ RPB) mask. Strips at the left and
right border (where legacy NA shifts windows inward) get their own call and mask; the top and bottom r rows
see the first / last k rows and get one call each. Each strip ends with a few phantom tiles whose output is
dropped. On big maps the strips are built and consumed a chunk at a time. Dilation splits the map into its
residue classes, each a dilation-1 map; classes of one shape run as one batch. Keys per query: (th + 2r)(tw + 2r) against k * k for window
attention; no tensor grows faster than the number of tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from natbench.attention._cache import tensor_cache
from natbench.attention.masked import na2d_masked
from natbench.attention.neighborhood import window_starts

# Tile shape: small tiles waste fewer keys on the halo, SDPA handles bigger ones with less overhead per query.
# 2 rows x 8 columns was the fastest of 1-4 x 4-16 for k = 3..13 on 56-224 maps (2-core AVX-512 CPU).
STRIP_TARGET = 8
ROWS_TARGET = 2
# Strips are built and consumed a few at a time: buffers this small stay in cache and are recycled by malloc
# instead of being faulted in afresh on every call.
CHUNK_BYTES = 1 << 20
# Maps of at most this many tokens per window key run as one masked SDPA over the whole map (masked.py): at
# k = 7 that is 14x14 and 7x7, where it ran 2-6x faster than the tiles (fp32, 2 threads); at 21x21 it lost.
MASKED_MAX_KEYS_RATIO = 6
MASKED_MAX_TOKENS = 1024
# Up to 19x19 the masked call wins at any kernel (the tiles' fixed cost of ~5 calls dominates): 14x14 k=3 ran
# 3x faster, 20x20 k=3..5 break even at batch 8 (fp32, 1 thread). Dilated maps' residue classes land here.
MASKED_SMALL_TOKENS = 361


@dataclass(frozen=True)
class _Columns:
    width: int  # tw: query columns per strip
    starts: tuple[int, ...]  # first query column of each strip; the last strip may overlap the one before
    uniform: int  # strips 0 .. uniform-1 start at i * tw
    pattern: tuple[int, ...]  # per strip, index into allowed
    allowed: tuple[torch.Tensor, ...]  # per pattern [tw, tw + 2r] bool: query a may see halo column c


def _columns(length: int, kernel: int, width: int) -> _Columns | None:
    r = kernel // 2
    starts = list(range(0, length - width + 1, width))
    uniform = len(starts)
    if starts[-1] + width < length:
        starts.append(length - width)
    win = window_starts(length, kernel, 1)
    c = torch.arange(width + 2 * r)
    patterns: list[torch.Tensor] = []
    pattern = []
    for x0 in starts:
        allowed = torch.zeros(width, width + 2 * r, dtype=torch.bool)
        for a in range(width):
            lo = int(win[x0 + a]) - (x0 - r)
            if lo < 0 or lo + kernel > width + 2 * r:
                return None
            allowed[a] = (c >= lo) & (c < lo + kernel)
        same = [i for i, p in enumerate(patterns) if torch.equal(p, allowed)]
        if not same:
            patterns.append(allowed)
        pattern.append(same[0] if same else len(patterns) - 1)
    return _Columns(width, tuple(starts), uniform, tuple(pattern), tuple(patterns))


@tensor_cache(maxsize=128)
def _plan_columns(length: int, kernel: int, target: int) -> _Columns:
    """Strip width near `target` with the least overlap; a strip as wide as the axis always works."""
    best = None
    for width in sorted(set(range(max(1, target // 2), min(length, 2 * target) + 1)) | {min(length, target)}):
        plan = _columns(length, kernel, width)
        if plan is not None:
            cost = (len(plan.starts) * width, abs(width - target))
            if best is None or cost < best[0]:
                best = (cost, plan)
    plan = best[1] if best else _columns(length, kernel, length)
    if plan is None:  # one strip covers every window, so this cannot happen
        raise ValueError(f"no strip plan for an axis of length {length} with kernel {kernel}")
    return plan


@dataclass(frozen=True)
class _Rows:
    """Row tiling: `tiles` tiles of th rows per strip (the last ones phantom), strips of `span` rows."""

    th: int
    tiles: int
    span: int  # rows per strip in the key buffer: tiles * th >= height


def _rows(height: int, kh: int, th: int) -> _Rows:
    r = kh // 2
    th = max(1, min(th, height - 2 * r))
    tiles = -(-height // th)
    return _Rows(th, tiles, tiles * th)


@tensor_cache(maxsize=256)
def _interior_parts(th: int, kh: int, cols: _Columns, kw: int, device: str):
    """Per column pattern: allowed [th*tw, (th+2r)*S] and flat RPB index, for tiles clear of the borders."""
    ry = kh // 2
    i, a = torch.arange(th + 2 * ry)[None, :], torch.arange(th)[:, None]
    row_ok, row_idx = (i >= a) & (i <= a + 2 * ry), (i - a + ry).clamp(0, 2 * kh - 2)
    return [_combine(row_ok, row_idx, allowed, kw, device) for allowed in cols.allowed]


@tensor_cache(maxsize=256)
def _edge_parts(height: int, kh: int, top: bool, cols: _Columns, kw: int, device: str):
    """Per strip: allowed [r*tw, kh*S] and RPB index for the top (or bottom) r rows, which see kh rows."""
    r = kh // 2
    i = torch.arange(kh)[None, :]
    ys = torch.arange(r)[:, None] if top else torch.arange(height - r, height)[:, None]
    first = 0 if top else height - kh
    row_idx = first + i - ys + kh - 1
    parts = [
        _combine(torch.ones(r, kh, dtype=torch.bool), row_idx, cols.allowed[p], kw, device)
        for p in cols.pattern
    ]
    return torch.stack([p[0] for p in parts]), torch.stack([p[1] for p in parts])


def _combine(row_ok, row_idx, col_ok, kw, device):
    rx = kw // 2
    a, c = torch.arange(col_ok.shape[0])[:, None], torch.arange(col_ok.shape[1])[None, :]
    col_idx = (c - a + rx).clamp(0, 2 * kw - 2)
    ok = row_ok[:, None, :, None] & col_ok[None, :, None, :]
    idx = row_idx[:, None, :, None] * (2 * kw - 1) + col_idx[None, :, None, :]
    shape = (row_ok.shape[0] * col_ok.shape[0], row_ok.shape[1] * col_ok.shape[1])
    return ok.reshape(shape).to(device), idx.reshape(shape).to(device)


@tensor_cache(maxsize=256)
def _neg(ok: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.zeros(ok.shape, dtype=dtype, device=ok.device).masked_fill_(~ok, float("-inf"))


_BIASES: dict = {}  # (id(rpb), id(idx), dtype) -> (rpb, version, idx, bias): inference reuses the gathered RPB


def _bias(ok, idx, rpb, dtype):
    """SDPA mask: 0/-inf [..., 1, q, k] without RPB, RPB/-inf [..., heads, q, k] with it."""
    if rpb is None:
        return _neg(ok, dtype).unsqueeze(-3)
    cacheable = not torch.is_grad_enabled() and not rpb.is_inference()
    key = (id(rpb), id(idx), dtype)
    if cacheable:
        hit = _BIASES.get(key)
        if hit and hit[0] is rpb and hit[1] == rpb._version and hit[2] is idx:
            return hit[3]
    bias = rpb.to(dtype).flatten(1)[:, idx]  # [heads, ..., q, k]
    bias = bias.movedim(0, -3).masked_fill(~ok.unsqueeze(-3), float("-inf"))
    if cacheable:
        if len(_BIASES) >= 1024:
            _BIASES.clear()
        _BIASES[key] = (rpb, rpb._version, idx, bias)
    return bias


def _strips(
    x: torch.Tensor, cols: _Columns, r: int, rows: int, first_row: int, extra: int, sel: range | None = None
) -> torch.Tensor:
    """Rows [first_row, first_row + rows) and columns [start - r, start + tw + r) of the strips `sel` (all by
    default), zero outside the map: [strips * B * rows + extra, tw + 2r, heads, D] (heads stay innermost, so
    copies move whole rows; strip-major, so a run of strips is one row range over every image)."""
    b, h, w, heads, d = x.shape
    sel = range(len(cols.starts)) if sel is None else sel
    tw, s, n = cols.width, cols.width + 2 * r, len(sel)
    buf = x.new_empty(b * n * rows + extra, s, heads, d)
    if extra:
        buf[b * n * rows :].zero_()
    out = buf[: b * n * rows].view(n, b, rows, s, heads, d)
    real = min(rows, h - first_row)
    if real < rows:
        out[:, :, real:].zero_()
    src = x[:, first_row : first_row + real]
    inside = [i for i in sel if cols.starts[i] >= r and cols.starts[i] + tw + r <= w and i < cols.uniform]
    if inside:  # uniform strips clear of the map's sides: one copy
        lo, cnt = inside[0], inside[-1] - inside[0] + 1
        out[lo - sel.start : lo - sel.start + cnt, :, :real] = (
            src[:, :, lo * tw - r :].unfold(2, s, tw)[:, :, :cnt].permute(2, 0, 1, 5, 3, 4)
        )
    for i in sel:
        if inside and inside[0] <= i <= inside[-1]:
            continue
        x0, j = cols.starts[i], i - sel.start
        lo, hi = max(x0 - r, 0), min(x0 + tw + r, w)
        if hi - lo < s:
            out[j, :, :real].zero_()
        out[j, :, :real, lo - (x0 - r) : hi - (x0 - r)] = src[:, :, lo:hi]
    return buf


def _write(out: torch.Tensor, res: torch.Tensor, cols: _Columns, strips: range) -> None:
    """res [B, strips, rows, tw, heads, D] -> the strips' columns of out [B, rows, W, heads, D]."""
    tw = cols.width
    uniform = [i for i in strips if i < cols.uniform]
    if uniform:
        lo, n = uniform[0], len(uniform)
        dst = out[:, :, lo * tw : (lo + n) * tw]
        dst.view(*dst.shape[:2], n, tw, *dst.shape[3:]).copy_(res[:, :n].transpose(1, 2))
    if cols.starts[-1] != (len(cols.starts) - 1) * tw and len(cols.starts) - 1 in strips:
        new = cols.uniform * tw - cols.starts[-1]
        out[:, :, cols.uniform * tw :] = res[:, -1, :, new:]


def _runs(pattern: tuple[int, ...]) -> list[range]:
    runs, start = [], 0
    for i in range(1, len(pattern) + 1):
        if i == len(pattern) or pattern[i] != pattern[start]:
            runs.append(range(start, i))
            start = i
    return runs


def _na2d_dense(q, k, v, kernel_size, rpb, scale, out, target, th):
    """Dilation-1 NA of one map [B, H, W, heads, D] (any strides), written into `out` (same shape)."""
    batch, height, width, heads, d = q.shape
    kh, kw = kernel_size
    ry, rx = kh // 2, kw // 2
    cols = _plan_columns(width, kw, target)
    rows = _rows(height, kh, th)
    tw, n_strips, th = cols.width, len(cols.starts), rows.th
    hk, s = th + 2 * ry, tw + 2 * rx
    dev = str(q.device)
    parts = _interior_parts(th, kh, cols, kw, dev)
    interior = out[:, ry : height - ry]
    per_strip = batch * rows.span * s * heads * d * q.element_size()
    chunk = n_strips if n_strips * per_strip <= 4 * CHUNK_BYTES else max(1, CHUNK_BYTES // per_strip)
    for c0 in range(0, n_strips, chunk):
        sel = range(c0, min(c0 + chunk, n_strips))
        # Key/value strips hold all rows; the phantom tiles at each strip's end read 2r rows past it.
        ks = _strips(k, cols, rx, rows.span, 0, 2 * ry, sel)
        vs = _strips(v, cols, rx, rows.span, 0, 2 * ry, sel)
        # Query strip row j is map row r + j: tile t holds rows r + t*th .. and sees key rows t*th .. + hk.
        qs = _strips(q, cols, 0, rows.span, ry, 0, sel).view(len(sel), batch, rows.span, tw, heads, d)
        runs = [range(max(run.start, sel.start), min(run.stop, sel.stop)) for run in _runs(cols.pattern)]
        for run in (run for run in runs if len(run)):
            local = slice(run.start - sel.start, run.stop - sel.start)
            qv = qs[local].reshape(-1, th * tw, heads, d).transpose(1, 2)
            first_row, count = local.start * batch * rows.span, len(run) * batch * rows.tiles

            def halo(buf, first_row=first_row, count=count):
                view = buf[first_row:].unfold(0, hk, th)[:count]  # [count, S, heads, D, hk]
                return view.permute(0, 2, 4, 1, 3).reshape(count, heads, hk * s, d)

            ok, idx = parts[cols.pattern[run.start]]
            mask = _bias(ok, idx, rpb, q.dtype)[None]  # SDPA's CPU flash kernel wants a 4-D mask
            res = F.scaled_dot_product_attention(qv, halo(ks), halo(vs), attn_mask=mask, scale=scale)
            res = res.transpose(1, 2).reshape(len(run), batch, rows.span, tw, heads, d)
            _write(interior, res[:, :, : height - 2 * ry].transpose(0, 1), cols, run)
    if ry:
        for top in (True, False):
            first = 0 if top else height - kh
            ok, idx = _edge_parts(height, kh, top, cols, kw, dev)
            mask = _bias(ok, idx, rpb, q.dtype)  # [strips, heads or 1, r*tw, kh*S]
            mask = mask[:, None].expand(n_strips, batch, *mask.shape[1:]).reshape(-1, *mask.shape[1:])
            qrows = 0 if top else height - ry
            qv = _strips(q, cols, 0, ry, qrows, 0)
            qv = qv.view(n_strips * batch, ry * tw, heads, d).transpose(1, 2)
            kv = [
                _strips(x, cols, rx, kh, first, 0).view(n_strips * batch, kh * s, heads, d).transpose(1, 2)
                for x in (k, v)
            ]
            res = F.scaled_dot_product_attention(qv, *kv, attn_mask=mask, scale=scale)
            res = res.transpose(1, 2).reshape(n_strips, batch, ry, tw, heads, d).transpose(0, 1)
            _write(out[:, qrows : qrows + ry], res, cols, range(n_strips))
    return out


def na2d_tiled(
    q, k, v, kernel_size, dilation, rpb, scale, strip: int = STRIP_TARGET, rows: int = ROWS_TARGET
):
    """Backend entry point: returns the output and the kernel that ran ("tiled-sdpa" or "masked-sdpa")."""
    batch, height, width, heads, d = q.shape
    if use_masked(height, width, kernel_size):
        return na2d_masked(q, k, v, kernel_size, dilation, rpb, scale)
    dh, dw = dilation
    if dh == 1 and dw == 1:
        out = torch.empty_like(q, memory_format=torch.contiguous_format)
        return _na2d_dense(q, k, v, kernel_size, rpb, scale, out, strip, rows), "tiled-sdpa"
    # Dilated NA is dilation-1 NA on each residue-class sub-grid. Classes come in at most 4 shapes (ceil or floor
    # rows x cols): the classes of one shape are stacked into the batch, one call per shape.
    out = torch.empty_like(q, memory_format=torch.contiguous_format)
    kernels = set()
    for rows_group in _class_groups(height, dh):
        for cols_group in _class_groups(width, dw):
            sub = [_classes(t, rows_group, cols_group, dilation) for t in (q, k, v)]
            n = batch * rows_group[1] * cols_group[1]
            flat = [t.reshape(n, *t.shape[3:]) for t in sub]
            res, kernel = na2d_tiled(*flat, kernel_size, (1, 1), rpb, scale, strip, rows)
            _classes(out, rows_group, cols_group, dilation).copy_(res.view(sub[0].shape))
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


def use_masked(height: int, width: int, kernel_size: tuple[int, int]) -> bool:
    n = height * width
    ratio_ok = n <= MASKED_MAX_KEYS_RATIO * kernel_size[0] * kernel_size[1]
    return n <= MASKED_MAX_TOKENS and (n <= MASKED_SMALL_TOKENS or ratio_ok)


def why_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cpu":
        return f"tiled is checked against the reference on CPU only, not on {device.type}; use 'natten' or 'flex'"
    if dtype not in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        return f"tiled supports float32/float64/bfloat16/float16, got {dtype}"
    return None
