"""The one op builder (natbench.measure.case.build_op): window padding outside the timed call, Swin's rule
for maps no larger than the window, and the benchmarks building their ops through it."""

from __future__ import annotations

import pytest
import torch

from natbench.measure.case import build_op
from natbench.measure.spec import CaseSpec

TINY = {"batch": 1, "heads": 1, "head_dim": 4}


def build(**fields):
    spec = CaseSpec.from_dict({**TINY, **fields})
    return build_op(spec, torch.device("cpu"), torch.float32)


def test_window_pads_once_in_setup_and_times_the_padded_call(monkeypatch):
    from natbench import attention

    prepared = build(target="window", resolution=10, kernel_size=4)
    padded = []
    real_pad = torch.nn.functional.pad
    monkeypatch.setattr(torch.nn.functional, "pad", lambda *a, **k: padded.append(1) or real_pad(*a, **k))
    shapes = []
    real = attention.window_attention_2d
    monkeypatch.setattr(
        attention, "window_attention_2d", lambda q, *a, **k: shapes.append(q.shape) or real(q, *a, **k)
    )
    with prepared.context():
        out = prepared.fn()
    assert not padded, "the timed call pads"
    assert shapes == [(1, 12, 12, 1, 4)] and out.shape == (1, 12, 12, 1, 4)
    assert prepared.kernel() == "sdpa:window+pad" and prepared.info["macs"] == 2 * 12**2 * 4**2 * 4


@pytest.mark.parametrize("shifted", [False, True])
def test_a_map_no_larger_than_the_window_is_one_window_without_shift(shifted, monkeypatch):
    from natbench import attention

    prepared = build(target="window", resolution=5, kernel_size=7, shifted=shifted)
    calls = []
    real = attention.window_attention_2d
    monkeypatch.setattr(
        attention,
        "window_attention_2d",
        lambda q, k, v, w, shift=0, **kw: calls.append((w, shift)) or real(q, k, v, w, shift=shift, **kw),
    )
    with prepared.context():
        prepared.fn()
    assert calls == [(5, 0)] and prepared.kernel() == "sdpa:window+window=map"
    assert prepared.info["macs"] == 2 * 5**2 * 5**2 * 4


def test_training_window_grads_reach_the_padded_inputs():
    prepared = build(target="window", resolution=6, kernel_size=4, mode="training")
    with prepared.context():
        grads = prepared.fn()
    assert [g.shape for g in grads] == [(1, 8, 8, 1, 4)] * 3


def test_benchmarks_build_their_ops_with_the_sweeps_builder(monkeypatch):
    from benchmarks import _na_cases, asv_cases
    from natbench.measure import case

    built = []
    real = case.build_op
    monkeypatch.setattr(case, "build_op", lambda spec, *a: built.append(spec) or real(spec, *a))
    asv_cases.attention_call("window", None, 14, 7, "cpu")()
    _na_cases.make_call(_na_cases.OpCase("window-shifted", 10, 4, heads=1, head_dim=4))()
    _na_cases.make_call(_na_cases.OpCase("reference", 8, 3, heads=1, head_dim=4))()
    assert [(s.target, s.resolution, s.kernel_size, s.shifted) for s in built] == [
        ("window", 14, 7, True),
        ("window", 10, 4, True),
        ("na", 8, 3, None),
    ]
    assert built[2].backend == "reference"
