"""natbench's fused C++ CPU kernel against the gather oracle: values, layouts, dispatch and its limits."""

from __future__ import annotations

import pytest
import torch

from natbench.attention import (
    backends,
    fused,
    last_kernel,
    neighborhood_attention_2d,
    resolve_backend,
    unavailable_reason,
)

HEADS = 2


def _qkv(batch, height, width, dim=8, dtype=torch.float32, seed=0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, height, width, HEADS, dim, generator=gen, dtype=dtype).requires_grad_(grad)
        for _ in range(3)
    ]


def _rpb(kh, kw, seed=1):
    return torch.randn(HEADS, 2 * kh - 1, 2 * kw - 1, generator=torch.Generator().manual_seed(seed))


def test_the_kernel_is_built_here():
    # CI installs with a compiler: a missing kernel is a broken build, not a skip.
    assert fused.why_unavailable(torch.device("cpu"), torch.float32) is None
    assert fused._na_cpu.lanes() == 8


CASES = [
    # batch, height, width, head dim, kernel, dilation, rpb, scale
    (1, 9, 13, 8, 3, 1, True, None),  # non-square, rows shorter than a block's interior
    (2, 14, 11, 32, 5, 1, False, None),
    (1, 7, 7, 32, 7, 1, True, None),  # one window covers the map: every query a border query
    (1, 14, 14, 32, 7, 1, True, None),  # NAT's stage-3 map: one interior block per row
    (1, 23, 40, 16, 7, 1, True, 0.3),  # interior blocks and a partial tail, custom scale
    (1, 16, 61, 24, (3, 9), 1, True, None),  # different kernel per axis
    (1, 20, 17, 8, 15, 1, True, None),  # a kernel width the kernel is not specialised for
    (1, 9, 40, 8, (3, 39), 1, True, None),  # a window wider than a block plus its halo
    (1, 12, 19, 5, 5, 1, True, None),  # head dim not a multiple of 8: the scalar gather path
    (1, 11, 12, 33, 3, 1, False, None),
    (2, 17, 20, 8, 3, 3, True, None),  # dilation: uneven residue classes
    (1, 31, 29, 32, 5, (4, 3), True, 0.5),
    (1, 10, 10, 8, 5, 2, True, None),  # map exactly kernel * dilation
    (11, 9, 12, 16, 5, 1, True, None),  # lanes over images: a full group of 8 and a partial one
    (8, 16, 16, 32, 7, 1, True, None),  # as a NAT stage at batch 8
    (11, 13, 17, 16, 3, 2, True, None),  # dilation with a full and a partial group of images
    (1, 28, 28, 32, 7, 3, False, None),  # classes 10 and 9 wide, no interior block: all in one call
]


def test_the_cheaper_layout_is_chosen():
    assert fused.lanes_over_batch(8, 56, 7) and fused.lanes_over_batch(8, 7, 7)
    assert not fused.lanes_over_batch(1, 56, 7)
    assert fused.lanes_over_batch(1, 7, 7) is False  # one image fills one lane of eight


@pytest.fixture(params=["lanes-columns", "lanes-images"])
def layout(request, monkeypatch):
    """Force one layout of the keys, whatever the batch and map."""
    monkeypatch.setattr(fused, "lanes_over_batch", lambda *args: request.param == "lanes-images")
    return request.param


@pytest.mark.parametrize("batch,height,width,dim,kernel,dilation,use_rpb,scale", CASES)
def test_fused_matches_reference(batch, height, width, dim, kernel, dilation, use_rpb, scale, layout):
    q, k, v = _qkv(batch, height, width, dim)
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    rpb = _rpb(kh, kw) if use_rpb else None
    ref = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb, scale, backend="reference")
    out = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb, scale, backend="fused")
    assert last_kernel() == f"fused:{layout}"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_fused_reads_strided_views_of_one_qkv_projection(layout):
    # As NAT calls it: q, k, v are unbound views of a [B, H, W, 3, heads, D] tensor.
    qkv = torch.randn(10, 21, 26, 3, HEADS, 16)
    q, k, v = qkv.unbind(3)
    rpb = _rpb(7, 7)
    ref = neighborhood_attention_2d(q.contiguous(), k, v, 7, rpb=rpb, backend="reference")
    torch.testing.assert_close(neighborhood_attention_2d(q, k, v, 7, rpb=rpb, backend="fused"), ref)
    # Channels not contiguous (the kernel's scalar packing path), with dilation.
    k2, v2 = (torch.randn(10, 21, 26, 16, HEADS).transpose(3, 4) for _ in range(2))
    ref = neighborhood_attention_2d(q.contiguous(), k2, v2, 5, 2, rpb=_rpb(5, 5), backend="reference")
    torch.testing.assert_close(
        neighborhood_attention_2d(q, k2, v2, 5, 2, rpb=_rpb(5, 5), backend="fused"), ref
    )


def test_fused_with_huge_scores_stays_finite():
    # The softmax subtracts each query's max: scores near 1e4 must not overflow the exp. At that size a
    # float32 score carries ~1e-3 of rounding, so the outputs agree to that.
    q, k, v = _qkv(1, 12, 12, 8)
    out = neighborhood_attention_2d(q * 100, k * 100, v, 5, backend="fused")
    ref = neighborhood_attention_2d(q.double() * 100, k.double() * 100, v.double(), 5, backend="reference")
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), ref, atol=5e-3, rtol=5e-3)


@pytest.mark.parametrize("width,column", [(9, 7), (20, 16), (40, 1)])
def test_a_nan_key_or_inf_value_stays_with_the_queries_that_see_it(width, column, layout):
    # Border blocks score the union of their lanes' windows: a NaN there must not reach the other lanes.
    q, k, v = _qkv(2, 5, width)
    k[0, 2, column, 0, 1] = float("nan")
    v[1, 3, column, 1, 2] = float("inf")
    rpb = _rpb(3, 3)
    out = neighborhood_attention_2d(q, k, v, 3, rpb=rpb, backend="fused")
    ref = neighborhood_attention_2d(q, k, v, 3, rpb=rpb, backend="reference")
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isfinite(out), finite) and not finite.all()
    torch.testing.assert_close(out[finite], ref[finite], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fused_low_precision_computes_in_float32(dtype):
    q, k, v = (t.to(dtype) for t in _qkv(1, 15, 18, 16))
    rpb = _rpb(5, 5)
    out = neighborhood_attention_2d(q, k, v, 5, (1, 2), rpb, backend="fused")
    assert out.dtype == dtype
    ref = neighborhood_attention_2d(q.float(), k.float(), v.float(), 5, (1, 2), rpb, backend="reference")
    torch.testing.assert_close(out, ref.to(dtype))


def test_auto_picks_fused_for_inference_and_tiled_for_training():
    assert backends()["fused"].supports_rpb and not backends()["fused"].supports_backward
    assert resolve_backend("cpu", torch.float32, rpb=True) == "fused"
    assert resolve_backend("cpu", torch.float32, rpb=True, grad=True) == "tiled"
    assert resolve_backend("cpu", torch.float64, rpb=True) == "tiled"
    q, k, v = _qkv(1, 24, 24, grad=True)
    with torch.no_grad():
        neighborhood_attention_2d(q, k, v, 3)
    assert last_kernel().startswith("fused:lanes-")
    neighborhood_attention_2d(q, k, v, 3).sum().backward()
    assert last_kernel().startswith("tiled:") and q.grad is not None


def test_fused_refuses_what_it_cannot_do():
    q, k, v = _qkv(1, 8, 8, grad=True)
    with pytest.raises(
        ValueError, match="backend 'fused' has no backward; use 'tiled' or 'auto' for training"
    ):
        neighborhood_attention_2d(q, k, v, 3, backend="fused")
    with pytest.raises(ValueError, match="takes float32/bfloat16/float16, got torch.float64; use 'tiled'"):
        neighborhood_attention_2d(*(t.detach().double() for t in (q, k, v)), 3, backend="fused")
    assert "natbench's CPU kernel, not for cuda" in unavailable_reason("fused", "cuda")


def test_without_the_kernel_auto_falls_back_and_says_why(monkeypatch):
    monkeypatch.setattr(fused, "_na_cpu", None)
    monkeypatch.setattr(fused, "_IMPORT_ERROR", "No module named 'natbench.attention._na_cpu'", raising=False)
    reason = unavailable_reason("fused")
    assert "C++ kernel cannot load" in reason and "pip install --no-build-isolation -e ." in reason
    assert resolve_backend("cpu", torch.float32, rpb=True) == "tiled"


def test_env_records_how_the_kernel_was_built(capsys, monkeypatch):
    import argparse

    from natbench import env

    env.collect.cache_clear()
    try:
        env.main(argparse.Namespace(json=False))
    finally:
        env.collect.cache_clear()
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("fused kernel build"))
    assert "lanes of float32" in line and "gcc" in line
    monkeypatch.setattr(fused, "_na_cpu", None)
    monkeypatch.setattr(fused, "_IMPORT_ERROR", "no compiler", raising=False)
    assert fused.build_info() == "not built (no compiler)"


def test_a_kernel_built_for_another_cpu_is_not_loaded(tmp_path):
    # -march=native code dies of SIGILL on a CPU without the builder's extensions (a shared install).
    built, cpuinfo = tmp_path / "isa", tmp_path / "cpuinfo"
    built.write_text("avx avx2 avx512f fma\n")
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    assert fused.missing_isa(built, cpuinfo) == ["avx512f"]
    cpuinfo.write_text("flags\t\t: fpu avx avx2 avx512f fma avx512vl\n")
    assert fused.missing_isa(built, cpuinfo) == []
    assert fused.missing_isa(tmp_path / "absent", cpuinfo) == []  # built elsewhere or not on Linux: no check
    assert fused.ISA_FILE.exists() and fused.missing_isa() == []  # this install's record matches this CPU
