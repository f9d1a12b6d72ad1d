"""Attention ops against slow, obviously-correct definitions (legacy NATTEN and timm's Swin)."""

from __future__ import annotations

import itertools

import pytest
import torch

from natbench.attention import (
    backends,
    full_attention_2d,
    last_kernel,
    neighborhood_attention_2d,
    rpb_from_timm_table,
    window_attention_2d,
)
from natbench.attention.neighborhood import window_starts


def legacy_window_start(index: int, length: int, kernel: int, dilation: int) -> int:
    """legacy NATTEN's get_window_start, written out case by case."""
    radius = kernel // 2
    if dilation <= 1:
        return max(index - radius, 0) + (index + radius >= length) * (length - index - radius - 1)
    if index - radius * dilation < 0:
        return index % dilation
    if index + radius * dilation >= length:
        imodd = index % dilation
        a = (length // dilation) * dilation
        b = length - a
        if imodd < b:
            return length - b + imodd - 2 * radius * dilation
        return a + imodd - kernel * dilation
    return index - radius * dilation


def brute_force_na(q, k, v, kernel, dilation, rpb, scale):
    """One query at a time, straight from the written semantics."""
    b, h, w, heads, _ = q.shape
    out = torch.zeros_like(q, dtype=torch.float64)
    q, k, v = q.double(), k.double(), v.double()
    for y, x in itertools.product(range(h), range(w)):
        sy, sx = legacy_window_start(y, h, kernel, dilation), legacy_window_start(x, w, kernel, dilation)
        keys = [(sy + i * dilation, sx + j * dilation) for i in range(kernel) for j in range(kernel)]
        for n, hd in itertools.product(range(b), range(heads)):
            scores = torch.stack([(q[n, y, x, hd] * scale) @ k[n, ky, kx, hd] for ky, kx in keys])
            if rpb is not None:
                scores = scores + torch.stack(
                    [
                        rpb[hd, (ky - y) // dilation + kernel - 1, (kx - x) // dilation + kernel - 1].double()
                        for ky, kx in keys
                    ]
                )
            p = scores.softmax(0)
            out[n, y, x, hd] = sum(p[i] * v[n, ky, kx, hd] for i, (ky, kx) in enumerate(keys))
    return out


def qkv(b, h, w, heads=2, dim=8, dtype=torch.float32, seed=0, grad=False):
    g = torch.Generator().manual_seed(seed)
    return [
        torch.randn(b, h, w, heads, dim, generator=g, dtype=torch.float32).to(dtype).requires_grad_(grad)
        for _ in range(3)
    ]


@pytest.mark.parametrize(
    "length,kernel,dilation",
    [
        (7, 7, 1),
        (9, 3, 1),
        (20, 13, 1),
        (11, 3, 2),
        (14, 5, 2),
        (13, 3, 4),
        (12, 3, 4),
        (17, 5, 3),
        (9, 3, 3),
    ],
)
def test_window_starts_match_legacy_natten(length, kernel, dilation):
    expected = [legacy_window_start(i, length, kernel, dilation) for i in range(length)]
    assert window_starts(length, kernel, dilation).tolist() == expected


@pytest.mark.parametrize(
    "shape,kernel,dilation,with_rpb",
    [
        ((1, 5, 7), 3, 1, True),
        ((2, 6, 5), 5, 1, True),
        ((1, 7, 9), 3, 2, True),
        ((1, 9, 10), 3, 3, False),
    ],
)
def test_reference_equals_brute_force(shape, kernel, dilation, with_rpb):
    q, k, v = qkv(*shape, heads=2, dim=4)
    rpb = torch.randn(2, 2 * kernel - 1, 2 * kernel - 1) if with_rpb else None
    out = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb=rpb, scale=0.3, backend="reference")
    torch.testing.assert_close(
        out.double(), brute_force_na(q, k, v, kernel, dilation, rpb, 0.3), atol=1e-5, rtol=1e-5
    )


# Non-square maps, borders, dilation 1-4, kernel 3-13, maps exactly kernel * dilation in size.
CASES = [
    (1, 9, 13, 3, 1),
    (2, 14, 11, 5, 1),
    (1, 7, 7, 7, 1),
    (1, 12, 10, 9, 1),
    (1, 13, 15, 13, 1),
    (2, 10, 13, 3, 2),
    (1, 15, 15, 5, 3),
    (1, 12, 16, 3, 4),
    (1, 6, 10, 3, 2),
    (1, 22, 11, 11, 1),
    (1, 20, 23, 5, 2),  # several 128-token flex blocks, dilation: windows not monotone in the query
    (1, 17, 30, 7, 1),
    (1, 28, 28, 7, 1),  # a query block reaches fewer KV blocks than the map has
]


# flex compiles once per shape (seconds each): a representative subset.
FLEX_CASES = [
    c
    for c in CASES
    if c[1:3] in {(14, 11), (13, 15), (10, 13), (12, 16), (6, 10), (20, 23), (17, 30), (28, 28)}
]


@pytest.mark.parametrize(
    "backend,b,h,w,kernel,dilation",
    [(name, *c) for name in ("natten", "fused") for c in CASES] + [("flex", *c) for c in FLEX_CASES],
)
def test_backend_matches_reference(backend, b, h, w, kernel, dilation):
    q, k, v = qkv(b, h, w)
    with_rpb = backends()[backend].supports_rpb
    rpb = torch.randn(2, 2 * kernel - 1, 2 * kernel - 1) if with_rpb else None
    ref = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb=rpb, backend="reference")
    out = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb=rpb, backend=backend)
    assert last_kernel().startswith(backend + ":")
    if backend == "flex":  # a silent fallback to eager flex would hide a broken block mask
        assert last_kernel() == "flex:flex-compiled"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_flex_backward_on_cpu_is_refused_clearly():
    q, k, v = qkv(1, 6, 6, grad=True)
    with pytest.raises(NotImplementedError, match="no backward on CPU; use backend 'tiled' or 'reference'"):
        neighborhood_attention_2d(q, k, v, 3, backend="flex")


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="torch's flex_attention has no backward on CPU: needs CUDA"
)
def test_flex_gradients_equal_reference():
    q, k, v = (t.detach().cuda().requires_grad_() for t in qkv(2, 9, 11))
    rpb = torch.randn(2, 5, 5, device="cuda", requires_grad=True)
    grads = []
    for backend in ("reference", "flex"):
        out = neighborhood_attention_2d(q, k, v, 3, (1, 2), rpb=rpb, backend=backend)
        grads.append(
            torch.autograd.grad(
                (out * torch.arange(out.numel(), device=out.device).view_as(out).sin()).sum(), (q, k, v, rpb)
            )
        )
    for ref, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_flex_bf16_close_to_fp32_reference():
    q, k, v = qkv(1, 10, 12)
    rpb = torch.randn(2, 5, 5)
    ref = neighborhood_attention_2d(q, k, v, 3, rpb=rpb, backend="reference")
    out = neighborhood_attention_2d(*(t.bfloat16() for t in (q, k, v)), 3, rpb=rpb.bfloat16(), backend="flex")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


def test_reference_bf16_computes_in_fp32():
    q, k, v = qkv(1, 8, 8)
    ref = neighborhood_attention_2d(q, k, v, 5, backend="reference")
    out = neighborhood_attention_2d(*(t.bfloat16() for t in (q, k, v)), 5, backend="reference")
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)


def test_kernel_covering_whole_map_is_full_attention():
    q, k, v = qkv(1, 7, 7)
    torch.testing.assert_close(
        neighborhood_attention_2d(q, k, v, 7, backend="reference"),
        full_attention_2d(q, k, v),
        atol=1e-5,
        rtol=1e-5,
    )


def test_full_attention_matches_softmax_definition():
    q, k, v = qkv(2, 3, 5)
    qf, kf, vf = (t.reshape(2, 15, 2, 8).transpose(1, 2) for t in (q, k, v))
    expected = ((qf @ kf.transpose(-1, -2)) * 8**-0.5).softmax(-1) @ vf
    torch.testing.assert_close(full_attention_2d(q, k, v), expected.transpose(1, 2).reshape(2, 3, 5, 2, 8))


@pytest.mark.parametrize("shift", [0, 3])
@pytest.mark.parametrize("size", [(14, 14), (7, 21)])
def test_window_attention_equals_timm_swin_block(shift, size):
    from timm.models.swin_transformer import SwinTransformerBlock

    torch.manual_seed(0)
    dim, heads, window = 32, 4, 7
    block = SwinTransformerBlock(dim, size, num_heads=heads, window_size=window, shift_size=shift).eval()
    with torch.no_grad():
        block.attn.relative_position_bias_table.normal_(std=0.5)
    x = torch.randn(2, *size, dim)
    with torch.no_grad():
        expected = block._attn(x)
        q, k, v = block.attn.qkv(x).view(2, *size, 3, heads, dim // heads).unbind(3)
        rpb = rpb_from_timm_table(block.attn.relative_position_bias_table, window)
        # timm drops the shift on an axis no longer than the window: follow the block's own choice.
        out = window_attention_2d(q, k, v, window, shift=tuple(block.shift_size), rpb=rpb)
        got = block.attn.proj(out.reshape(2, *size, dim))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_auto_says_what_it_chose():
    q, k, v = qkv(1, 8, 8)
    neighborhood_attention_2d(q, k, v, 3, rpb=torch.zeros(2, 5, 5))
    chosen = last_kernel().split(":")[0]
    assert chosen in backends() and backends()[chosen].supports_rpb


# Bad input: one ValueError that names the fix.
def _bad(**kw):
    q, k, v = qkv(1, 8, 8)
    args = {"q": q, "k": k, "v": v, "kernel_size": 3}
    args.update(kw)
    return args


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(kernel_size=4), r"kernel_size must be odd .* use 5"),
        (
            dict(kernel_size=9),
            r"kernel_size \* dilation = 9 \* 1 = 9 is larger than the feature map's height 8",
        ),
        (dict(dilation=3), r"kernel_size \* dilation = 3 \* 3 = 9 is larger"),
        (
            dict(rpb=torch.zeros(2, 3, 3)),
            r"rpb must have shape \[heads, 2\*kernel_size-1, 2\*kernel_size-1\] = \[2, 5, 5\]",
        ),
        (
            dict(rpb=torch.zeros(2, 5, 5), backend="natten"),
            r"no relative positional bias; use 'fused', 'tiled', 'flex' or 'reference'",
        ),
        (dict(backend="cudnn"), r"unknown backend 'cudnn'; choose one of"),
        (dict(k=torch.zeros(1, 8, 9, 2, 8)), r"same shape"),
        (dict(v=torch.zeros(1, 8, 8, 2, 8, dtype=torch.float64)), r"one dtype"),
        (dict(q=torch.zeros(1, 8, 8, 16)), r"5-D \[batch, height, width, heads, head_dim\]"),
        (dict(kernel_size="7"), r"kernel_size must be an int or a pair"),
    ],
)
def test_bad_neighborhood_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        neighborhood_attention_2d(**_bad(**kwargs))


def test_mismatched_devices_rejected():
    q, k, v = qkv(1, 8, 8)
    with pytest.raises(ValueError, match="one device"):
        neighborhood_attention_2d(q, k, v.to("meta"), 3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(window_size=5), r"multiple of window_size 5x5"),
        (dict(window_size=4, shift=4), r"shift must be in \[0, window_size\)"),
        (dict(window_size=4, rpb=torch.zeros(2, 5, 5)), r"\[2, 7, 7\]"),
    ],
)
def test_bad_window_input(kwargs, message):
    q, k, v = qkv(1, 8, 8)
    with pytest.raises(ValueError, match=message):
        window_attention_2d(q, k, v, **kwargs)


@pytest.mark.parametrize("op", ["tiled", "window"])
def test_shape_caches_filled_in_inference_mode_still_serve_autograd(op):
    # Odd sizes no other test uses, so this test fills the caches itself.
    size, kernel = (19, 23) if op == "tiled" else (15, 25), 5
    q, k, v = qkv(2, *size, grad=True)
    rpb = torch.randn(2, 9, 9, requires_grad=True)

    def run(*args):
        if op == "tiled":
            return neighborhood_attention_2d(*args, kernel, rpb=rpb, backend="tiled")
        return window_attention_2d(*args, kernel, shift=2, rpb=rpb)

    with torch.inference_mode():
        run(*(t.detach() for t in (q, k, v)))
    run(q, k, v).sum().backward()
    assert all(t.grad is not None and torch.isfinite(t.grad).all() for t in (q, k, v, rpb))


@pytest.mark.parametrize("height,width,kernel,dilation", [(20, 23, 5, 2), (9, 13, 3, 1), (30, 17, 7, 1)])
def test_flex_tile_and_row_order_equal_reference(height, width, kernel, dilation):
    """Tile order (8x16 tiles, padded maps) and row order give the reference's values, RPB included."""
    from natbench.attention.flex import na2d_flex
    from natbench.attention.reference import na2d_reference

    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, height, width, 2, 16, generator=gen) for _ in range(3))
    rpb = torch.randn(2, 2 * kernel - 1, 2 * kernel - 1, generator=gen)
    ks, dil = (kernel, kernel), (dilation, dilation)
    with torch.no_grad():
        ref = na2d_reference(q, k, v, ks, dil, rpb, 0.25)
        for order in ("tiles", "rows"):
            out, kernel_ran = na2d_flex(q, k, v, ks, dil, rpb, 0.25, compile=False, order=order)
            torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5, msg=order)
    with pytest.raises(ValueError, match="order must be"):
        na2d_flex(q, k, v, ks, dil, rpb, 0.25, compile=False, order="diagonal")


def test_flex_tile_block_mask_has_constant_blocks_per_query_block():
    """Tile order: every query block reaches at most 3 x 3 key tiles (k = 7), whatever the map size."""
    from natbench.attention.flex import _tiles

    for side in (56, 112):
        counts = _tiles(side, side, (7, 7), (1, 1), "cpu")[7]
        assert int(counts.max()) <= 9 and int(counts.min()) >= 4
