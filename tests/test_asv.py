"""The asv suite: discovered as asv sees it, `asv check` passes, cases skip cleanly and compute the right op."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def suite():
    from asv_runner.discovery import disc_benchmarks

    sys.path.insert(0, str(ROOT))
    try:
        return {b.name: b for b in disc_benchmarks(str(ROOT / "benchmarks"))}
    finally:
        sys.path.remove(str(ROOT))


def test_suite_has_the_planned_benchmarks(suite):
    ours = {n for n in suite if n.startswith("asv_")}
    assert {
        "asv_ops.NeighborhoodAttentionCPU.time_forward",
        "asv_ops.NeighborhoodAttentionCPU.track_peak_mem",
        "asv_ops.WindowAttentionCPU.time_forward",
        "asv_ops.FullAttentionCPU.time_forward",
        "asv_ops.AttentionCUDA.track_latency_ms",
        "asv_models.ModelForwardCPU.time_forward",
        "asv_models.ModelForwardCPU.track_peak_mem",
        "asv_models.ModelInfo.track_params",
        "asv_models.ModelInfo.track_macs",
        "asv_models.ModelForwardCUDA.track_latency_ms",
    } <= ours
    na = suite["asv_ops.NeighborhoodAttentionCPU.time_forward"]
    assert na.param_names == ["backend", "kernel_size", "resolution"]
    assert na.params[0] == ["'fused'", "'tiled'", "'flex'", "'natten'", "'reference'"]
    assert suite["asv_ops.AttentionCUDA.track_latency_ms"].unit == "ms"
    assert suite["asv_models.ModelInfo.track_macs"].unit == "MACs"


def test_ci_selection_picks_cases_of_every_listed_class(suite, noxfile):
    # asv matches --bench against "name(param, ...)" with the params as repr strings
    names = [
        f"{n}({', '.join(p)})" if b.params else n
        for n, b in suite.items()
        for p in (itertools.product(*b.params) if b.params else [()])
    ]
    for regex in noxfile.ASV_CI_BENCH:
        assert any(re.search(regex, name) for name in names), regex
    selected = [n for n in names if any(re.search(r, n) for r in noxfile.ASV_CI_BENCH)]
    assert not any(
        "'flex'" in n or "'natten', 7, 28" in n for n in selected if "CPU" in n
    )  # slow cases stay out


def test_asv_check_passes():
    out = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout


def test_asv_check_catches_a_broken_benchmark(tmp_path):
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "__init__.py").write_text("")
    (bench / "bad.py").write_text("class Bad:\n    params = [1, 2]\n    def time_it(self):\n        pass\n")
    conf = (ROOT / "asv.conf.json").read_text()
    (tmp_path / "asv.conf.json").write_text(conf)
    out = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0 and "bad.Bad.time_it" in out.stdout + out.stderr


def test_cases_skip_what_cannot_run_here():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import asv_cases
    finally:
        sys.path.remove(str(ROOT))
    with pytest.raises(NotImplementedError, match="unknown backend"):
        asv_cases.attention_call("na", "no-such-backend", 14, 7, "cpu")
    with pytest.raises(NotImplementedError, match="limited to maps"):
        asv_cases.attention_call("na", "natten", 56, 7, "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(NotImplementedError, match="CUDA"):
            asv_cases.need_cuda()


def test_timed_op_is_neighborhood_attention():
    sys.path.insert(0, str(ROOT))
    try:
        from benchmarks import asv_cases
    finally:
        sys.path.remove(str(ROOT))
    from natbench.attention import neighborhood_attention_2d

    out = asv_cases.attention_call("na", "reference", 14, 7, "cpu")()
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 14, 14, asv_cases.HEADS, asv_cases.HEAD_DIM, generator=gen) for _ in range(3))
    # independent check: each query's softmax over its clamped 7x7 window, computed densely here
    scores = torch.einsum("bhwnd,bxynd->bhwnxy", q * asv_cases.HEAD_DIM**-0.5, k)
    idx = torch.arange(14)
    start = (idx - 3).clamp(0, 14 - 7)
    inside = (idx[None, :] >= start[:, None]) & (idx[None, :] < start[:, None] + 7)  # [query, key]
    mask = inside[:, None, :, None] & inside[None, :, None, :]  # [qy, qx, ky, kx]
    scores = scores.masked_fill(~mask[None, :, :, None], float("-inf"))
    attn = scores.flatten(-2).softmax(-1).view_as(scores)
    expected = torch.einsum("bhwnxy,bxynd->bhwnd", attn, v)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out, neighborhood_attention_2d(q, k, v, 7, backend="reference"))
