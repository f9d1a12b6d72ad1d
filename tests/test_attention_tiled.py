"""The tiled CPU backend against the gather oracle: values, gradients, dispatch and linear memory."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from natbench.attention import (
    backends,
    last_kernel,
    neighborhood_attention_2d,
    resolve_backend,
    tiled,
    unavailable_reason,
)
from natbench.attention.tiled import na2d_tiled

HEADS, DIM = 2, 8


def _qkv(batch, height, width, dtype=torch.float32, seed=0, grad=False):
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, height, width, HEADS, DIM, generator=gen, dtype=dtype).requires_grad_(grad)
        for _ in range(3)
    ]


def _rpb(kernel, seed=1, grad=False):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(HEADS, 2 * kh - 1, 2 * kw - 1, generator=gen).requires_grad_(grad)


CASES = [
    # batch, height, width, kernel, dilation, rpb, scale
    (1, 9, 13, 3, 1, True, None),  # non-square
    (2, 14, 11, 5, 1, False, None),  # batch 2
    (1, 7, 7, 7, 1, True, None),  # map exactly kernel * dilation
    (1, 10, 10, 5, 2, True, None),  # map exactly kernel * dilation, dilated
    (1, 23, 19, 7, 1, True, 0.3),  # custom scale, borders on every side
    (2, 17, 20, 3, 3, True, None),  # uneven residue classes
    (1, 16, 13, 3, 4, False, 1.7),
    (1, 13, 13, 13, 1, True, None),  # one window covers the map
    (1, 29, 31, 9, 1, True, None),
    (1, 24, 22, 11, 2, True, None),
    (1, 30, 27, 13, 2, False, None),
    (1, 12, 30, (3, 7), (2, 1), True, None),  # different kernel and dilation per axis
    (2, 23, 26, 5, 3, True, None),  # non-divisible dilation: 4 class shapes, classes stacked per shape
    (1, 31, 29, 5, (4, 3), True, 0.5),  # 3 of 4 row classes long, 2 of 3 column classes long
    (1, 40, 37, 7, (1, 4), True, None),  # dilation on one axis only, uneven
]


@pytest.fixture(params=["tiled-sdpa", "masked-sdpa"])
def path(request, monkeypatch):
    """Force the strip kernel or the whole-map masked SDPA, whatever the map size."""
    big = request.param == "masked-sdpa"
    monkeypatch.setattr(tiled, "MASKED_MAX_KEYS_RATIO", 10**6 if big else 0)
    monkeypatch.setattr(tiled, "MASKED_MAX_TOKENS", 10**6 if big else 0)
    return request.param


@pytest.mark.parametrize("batch,height,width,kernel,dilation,use_rpb,scale", CASES)
def test_tiled_matches_reference(batch, height, width, kernel, dilation, use_rpb, scale, path):
    q, k, v = _qkv(batch, height, width)
    rpb = _rpb(kernel) if use_rpb else None
    out = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb, scale, backend="tiled")
    assert last_kernel() == f"tiled:{path}"
    ref = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb, scale, backend="reference")
    assert out.shape == ref.shape and out.dtype == ref.dtype
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_tiled_strip_chunks_match_reference(monkeypatch):
    """Big maps build their key strips a few at a time; force one strip per chunk on a small map."""
    monkeypatch.setattr(tiled, "CHUNK_BYTES", 1)
    q, k, v = _qkv(2, 19, 37)
    rpb = _rpb(5)
    out = neighborhood_attention_2d(q, k, v, 5, 1, rpb, backend="tiled")
    ref = neighborhood_attention_2d(q, k, v, 5, 1, rpb, backend="reference")
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "batch,height,width,kernel,dilation",
    [(2, 11, 9, 3, 1), (1, 13, 12, 5, 2), (1, 7, 7, 7, 1), (1, 15, 10, (5, 3), (1, 3))],
)
def test_tiled_gradients_match_reference(batch, height, width, kernel, dilation, path):
    grads = {}
    for backend in ("tiled", "reference"):
        q, k, v = _qkv(batch, height, width, grad=True)
        rpb = _rpb(kernel, grad=True)
        out = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb, backend=backend)
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
        grads[backend] = torch.autograd.grad(out, (q, k, v, rpb), upstream)
    for name, got, want in zip("q k v rpb".split(), grads["tiled"], grads["reference"]):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4, msg=f"gradient of {name}")


def test_tiled_gradients_without_rpb(path):
    q, k, v = _qkv(1, 10, 12, grad=True)
    out = neighborhood_attention_2d(q, k, v, 5, 1, backend="tiled")
    got = torch.autograd.grad(out.square().sum(), (q, k, v))
    q2, k2, v2 = (t.detach().clone().requires_grad_(True) for t in (q, k, v))
    ref = neighborhood_attention_2d(q2, k2, v2, 5, 1, backend="reference")
    want = torch.autograd.grad(ref.square().sum(), (q2, k2, v2))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=2e-5, rtol=1e-4)


def _bf16_sdpa_runs() -> bool:
    try:
        x = torch.randn(1, 1, 4, 8, dtype=torch.bfloat16)
        torch.nn.functional.scaled_dot_product_attention(
            x, x, x, attn_mask=torch.zeros(4, 4, dtype=torch.bfloat16)
        )
        return True
    except RuntimeError:
        return False


@pytest.mark.skipif(not _bf16_sdpa_runs(), reason="this torch build has no bfloat16 SDPA on CPU")
def test_tiled_bfloat16_close_to_float32_reference(path):
    q, k, v = _qkv(1, 15, 18)
    rpb = _rpb(5)
    ref = neighborhood_attention_2d(q, k, v, 5, (1, 2), rpb, backend="reference")
    low = [t.bfloat16() for t in (q, k, v)]
    out = neighborhood_attention_2d(*low, 5, (1, 2), rpb, backend="tiled")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, atol=3e-2, rtol=3e-2)


def test_auto_picks_tiled_for_training_on_cpu():
    assert backends()["tiled"].supports_rpb
    assert resolve_backend("cpu", torch.float32, rpb=True, grad=True) == "tiled"
    q, k, v = _qkv(1, 24, 24)
    neighborhood_attention_2d(q, k, v, 3, rpb=_rpb(3), backend="tiled")
    assert last_kernel() == "tiled:tiled-sdpa"
    q, k, v = _qkv(1, 9, 9)  # up to 19x19 the masked call wins whatever the kernel
    neighborhood_attention_2d(q, k, v, 3, rpb=_rpb(3), backend="tiled")
    assert last_kernel() == "tiled:masked-sdpa"
    q, k, v = _qkv(1, 14, 14)  # a late NAT stage's map at k = 7: one masked SDPA over the map
    neighborhood_attention_2d(q, k, v, 7, rpb=_rpb(7), backend="tiled")
    assert last_kernel() == "tiled:masked-sdpa"
    assert "CPU only" in unavailable_reason("tiled", "cuda")


class _LargestTensor(TorchDispatchMode):
    """Largest number of elements of any tensor an op produces while the mode is active."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def _largest_intermediate(side: int, grad: bool) -> tuple[int, int]:
    q, k, v = _qkv(1, side, side, grad=grad)
    rpb = _rpb(7, grad=grad)
    with _LargestTensor() as mode:
        out = neighborhood_attention_2d(q, k, v, 7, 1, rpb, backend="tiled")
        if grad:
            out.sum().backward()
    return mode.largest, q.numel()


@pytest.mark.parametrize("grad", [False, True])
def test_tiled_memory_is_linear_in_tokens(grad, monkeypatch):
    monkeypatch.setattr(tiled, "MASKED_MAX_TOKENS", 0)  # the strip kernel; masked is for small maps only
    small, _ = _largest_intermediate(32, grad)
    large, _ = _largest_intermediate(64, grad)
    tokens = 64 * 64
    # 4x the tokens: a linear backend's largest tensor grows ~4x (a bit more here: the share of interior
    # strips, which run as one call, grows with the map), a score matrix would grow 16x. The largest
    # tensor stays within a few times what unfused NA holds (tokens x heads x k*k scores; the key halo
    # makes it bigger by (th + 2r)(tw + 2r) / (th tw k k), the RPB gradient needs one such tensor).
    assert large <= 8 * small
    assert large <= 4 * tokens * HEADS * 7 * 7
    assert large < tokens * tokens * HEADS / 16  # the full score matrix is 16x bigger still


def test_tiled_entry_point_reports_kernel():
    q, k, v = _qkv(1, 24, 24)
    out, kernel = na2d_tiled(q, k, v, (3, 3), (1, 1), None, DIM**-0.5)
    assert kernel == "tiled-sdpa" and out.shape == q.shape


def test_masked_path_on_non_contiguous_views_and_full_window():
    """Fused-qkv views (strided) and a window covering the whole map (no mask at all) stay exact."""
    gen = torch.Generator().manual_seed(5)
    qkv = torch.randn(2, 7, 7, 3, HEADS, DIM, generator=gen)
    q, k, v = qkv.unbind(3)
    for rpb in (None, _rpb(7)):
        out = neighborhood_attention_2d(q, k, v, 7, 1, rpb, backend="tiled")
        assert last_kernel() == "tiled:masked-sdpa"
        ref = neighborhood_attention_2d(q, k, v, 7, 1, rpb, backend="reference")
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("side", [7, 16])
def test_rpb_cache_follows_in_place_updates(side, path):
    """Inference reuses the gathered RPB bias; an in-place change of the RPB must show in the next call."""
    q, k, v = _qkv(1, side, side)
    rpb = _rpb(5)
    with torch.no_grad():
        first = neighborhood_attention_2d(q, k, v, 5, 1, rpb, backend="tiled")
        assert last_kernel() == f"tiled:{path}"
        rpb.mul_(3.0)
        second = neighborhood_attention_2d(q, k, v, 5, 1, rpb, backend="tiled")
    ref = neighborhood_attention_2d(q, k, v, 5, 1, rpb, backend="reference")
    torch.testing.assert_close(second, ref, atol=1e-5, rtol=1e-5)
    assert (first - second).abs().max() > 1e-3


@pytest.mark.parametrize(
    "height,width,kernel,dilation,kernel_ran",
    [
        (28, 28, 7, 2, "masked-sdpa"),  # equal residue classes of 14x14, stacked into the batch
        (60, 44, 5, 2, "tiled-sdpa"),  # equal classes of 30x22, stacked, on the strip kernel
        (38, 39, 5, 2, "masked-sdpa+tiled-sdpa"),  # unequal classes: 19x20 tiled, 19x19 masked
        (36, 24, 5, (4, 3), "masked-sdpa"),  # different dilation per axis
    ],
)
def test_dilated_maps_per_residue_class_match_reference(height, width, kernel, dilation, kernel_ran):
    grads = {}
    for backend in ("tiled", "reference"):
        q, k, v = _qkv(2, height, width, grad=True)
        rpb = _rpb(kernel, grad=True)
        out = neighborhood_attention_2d(q, k, v, kernel, dilation, rpb, backend=backend)
        if backend == "tiled":
            assert last_kernel() == f"tiled:{kernel_ran}"
        up = torch.randn(out.shape, generator=torch.Generator().manual_seed(3))
        grads[backend] = (out.detach(), *torch.autograd.grad(out, (q, k, v, rpb), up))
    for name, got, want in zip("out q k v rpb".split(), grads["tiled"], grads["reference"]):
        torch.testing.assert_close(got, want, atol=2e-5, rtol=1e-4, msg=name)
