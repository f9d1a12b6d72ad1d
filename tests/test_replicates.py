"""Several results directories of the same cases are sweeps, judged one by one and combined as replicates; the
random-effects interval behind it; directories with no case in common are still one sweep."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from natbench.claims import ERROR, PASS, judge, load_claims
from natbench.claims.replicates import combine_group, sweeps
from natbench.measure.stats import replicate_ci
from natbench.results import append_row, load


def claim(cid: str):
    return next(c for c in load_claims() if c.id == cid)


def test_agreeing_sweeps_keep_the_fixed_effect_error_on_t_with_k_minus_1_df():
    r = replicate_ci([0.0, 0.001], [0.01, 0.01])
    assert r.between_sd == 0 and r.sweeps == 2
    half = stats.t.ppf(0.975, 1) * 0.01 / math.sqrt(2)
    assert (r.low, r.high) == pytest.approx((r.centre - half, r.centre + half))


def test_sweeps_apart_beyond_their_errors_widen_the_interval():
    values, errors = [0.0, 0.1, 0.2], [0.01] * 3
    r = replicate_ci(values, errors)
    assert r.between_sd == pytest.approx(0.1, rel=0.05)
    assert r.low < 0.0 and r.high > 0.2  # the sweeps' spread, not their +-2 % each
    fixed_half = stats.t.ppf(0.975, 2) * 0.01 / math.sqrt(3)
    assert r.high - r.centre > 5 * fixed_half


def test_exact_readings_use_the_sweeps_plain_spread():
    r = replicate_ci([5.0, 5.0, 5.0], [0.0, 0.0, 0.0])
    assert (r.low, r.centre, r.high) == (5.0, 5.0, 5.0)
    r = replicate_ci(
        [0.0, 0.001], [0.0, 0.2]
    )  # a sweep without a band borrows the other's, not the sweeps' 0.001
    assert r.high - r.centre >= stats.t.ppf(0.975, 1) * 0.2 / math.sqrt(2)
    with pytest.raises(ValueError, match=">= 2 values"):
        replicate_ci([1.0], [0.1])


def model_row(case_id: str, target: str, **kw) -> dict:
    row = dict(case_id=case_id, status="ok", kind="model", target=target, device="cpu", dtype="float32")
    row.update(mode="inference", batch=1, resolution=224, repeats=5, device_name="CPU X", preset="cpu-quick")
    row.update(machine="cpu:X:1t", threads=1, backend="auto")
    return {**row, **kw}


def k9_k7_sweep(directory, ratio: float) -> None:
    """A cpu-quick sweep's NAT-Tiny k9 / k7 rows and their interleaved pair (k9 latency / k7 latency)."""
    append_row(directory, model_row("k9", "nat_tiny", kernel_size=9, latency_ms=100.0 * ratio))
    append_row(directory, model_row("k7", "nat_tiny", kernel_size=7, latency_ms=100.0))
    pair = model_row("p", "nat_tiny/nat_tiny", kind="pair", pair_of=["k9", "k7"], metric="latency")
    append_row(
        directory, {**pair, "ratio": ratio, "ratio_ci_low": ratio * 0.99, "ratio_ci_high": ratio * 1.01}
    )


def test_two_sweeps_of_a_ratio_claim_give_one_group_over_both(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    k9_k7_sweep(a, 1.2)
    k9_k7_sweep(b, 1.3)
    c = claim("dinat.cpu.nat_tiny.throughput_k9_vs_k7")
    (alone,) = judge(load([a]), [c])
    assert alone.band == pytest.approx([1 / 1.212, 1 / 1.188])
    (v,) = judge(load([a, b]), [c])
    # pooled as one table this was four groups (each sweep's k9 over each sweep's k7), all read from sweep a's pair
    assert len(v.groups) == 1
    assert (
        v.band[0] < 1 / 1.3 and v.band[1] > 1 / 1.2
    )  # holds both sweeps: they differ by far more than +-1 %
    assert 1 / 1.3 < v.measured < 1 / 1.2
    assert "over 2 sweeps" in v.provenance and "random-effects" in v.groups[0]["band_source"]
    se = math.log(1.01 / 0.99) / (2 * 1.959964)
    r = replicate_ci([-math.log(1.2), -math.log(1.3)], [se, se])
    assert v.band == pytest.approx([math.exp(r.low), math.exp(r.high)])


def test_a_directory_every_sweep_shares_is_read_once(tmp_path):
    a, b, o = tmp_path / "a", tmp_path / "b", tmp_path / "o"
    k9_k7_sweep(a, 1.2)
    k9_k7_sweep(b, 1.3)
    for cid, target, mem in (("n1", "nat_mini", 1e8), ("s1", "swin_tiny", 2e8)):
        band = {"peak_mem_ci_low_bytes": mem * 0.98, "peak_mem_ci_high_bytes": mem * 1.02}
        append_row(o, model_row(cid, target, peak_mem_bytes=mem, **band))
    c = claim("nat.cpu.memory.nat_mini_below_swin_tiny")
    (alone,) = judge(load([o]), [c])
    (v,) = judge(load([a, b, o]), [c])
    assert len(sweeps(load([a, b, o]))) == 2
    assert alone.band[0] < alone.measured < alone.band[1]
    assert v.band == alone.band and v.verdict == alone.verdict and "sweeps" not in v.provenance


def test_a_directory_re_running_a_few_cases_is_no_replicate(tmp_path):
    a, rerun = tmp_path / "a", tmp_path / "rerun"
    k9_k7_sweep(a, 1.2)
    for i in range(4):
        append_row(a, model_row(f"m{i}", "nat_mini", peak_mem_bytes=1e8))
    append_row(rerun, model_row("k9", "nat_tiny", kernel_size=9, latency_ms=121.0))
    df = load([a, rerun])
    assert len(sweeps(df)) == 1
    (v,) = judge(df, [claim("dinat.cpu.nat_tiny.throughput_k9_vs_k7")])
    assert v.verdict != ERROR


def test_exact_values_are_compared_not_averaged():
    same = [
        ("a", {"measured": 3, "band": [3, 3], "rows": ["x"]}),
        ("b", {"measured": 3, "band": [3, 3], "rows": ["y"]}),
    ]
    m = combine_group("g", same, exact=True)
    assert m.value == 3 and isinstance(m.value, int)
    apart = [same[0], ("b", {"measured": 4, "band": [4, 4], "rows": ["y"]})]
    assert combine_group("g", apart, exact=True) is None
    flags = [
        ("a", {"measured": True, "band": [True, True]}),
        ("b", {"measured": False, "band": [False, False]}),
    ]
    assert combine_group("g", flags) is None  # booleans are no numbers to average


def test_directories_with_no_case_in_common_are_one_sweep(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    append_row(a, model_row("n1", "nat_mini", peak_mem_bytes=1e8))
    append_row(b, model_row("s1", "swin_tiny", peak_mem_bytes=2e8))
    df = load([a, b])
    assert len(sweeps(df)) == 1
    (v,) = judge(df, [claim("nat.cpu.memory.nat_mini_below_swin_tiny")])
    assert v.verdict == PASS and v.groups[0]["rows"] == ["n1", "s1"]


def test_sweeps_pair_replicates_and_share_the_rest(tmp_path):
    dirs = [tmp_path / n for n in ("a", "b", "other")]
    append_row(dirs[0], model_row("n1", "nat_mini", peak_mem_bytes=1e8))
    append_row(dirs[1], model_row("n1", "nat_mini", peak_mem_bytes=1.1e8))
    append_row(dirs[2], model_row("s1", "swin_tiny", peak_mem_bytes=2e8))
    frames = sweeps(load(dirs))
    assert [sorted(set(f["source"])) for f in frames] == [
        sorted([str(dirs[0]), str(dirs[2])]),
        sorted([str(dirs[1]), str(dirs[2])]),
    ]


def test_an_error_in_one_sweep_is_the_verdict(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    k9_k7_sweep(a, 1.2)
    append_row(b, model_row("k9", "nat_tiny", kernel_size=9, status="error", error="boom"))
    append_row(b, model_row("k7", "nat_tiny", kernel_size=7, status="error", error="boom"))
    (v,) = judge(load([a, b]), [claim("dinat.cpu.nat_tiny.throughput_k9_vs_k7")])
    assert v.verdict == ERROR and v.reason.startswith(f"in sweep {b}")


def fit_sweep(directory, exponent: float) -> None:
    """Tiled NA at five sizes, latency = tokens ** exponent, three processes 1 % apart."""
    for i, res in enumerate((14, 28, 42, 56, 70)):
        t = (res * res / 196) ** exponent
        row = dict(case_id=f"na-{i}", status="ok", kind="op", target="na", backend="tiled", device="cpu")
        row.update(mode="inference", resolution=res, tokens=res * res, kernel_size=7, preset="cpu-quick")
        row.update(dtype="float32", machine="cpu:X:1t", threads=1, latency_ms=t, repeats=3)
        append_row(directory, {**row, "latency_process_ms": [t * 0.99, t, t * 1.01]})


def test_a_scaling_fit_is_fitted_per_sweep_then_combined(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    fit_sweep(a, 1.0)
    fit_sweep(b, 1.1)
    c = claim("complexity.na.time_linear")
    (one,) = judge(load([a]), [c])
    assert one.measured == pytest.approx(1.0, abs=1e-6)
    (v,) = judge(load([a, b]), [c])
    # pooling both sweeps' processes per size would fit one line through two offsets with a narrow band
    assert 1.0 < v.measured < 1.1 and v.band[0] < 1.0 and v.band[1] > 1.1
    assert "over 2 sweeps" in v.provenance


def test_readings_that_cannot_be_combined_keep_a_verdict_they_share():
    from natbench.claims.judge import Verdict
    from natbench.claims.replicates import combine_sweeps

    c = claim("dinat.cpu.nat_tiny.throughput_k9_vs_k7")

    def reading(value, verdict):  # a band with an open end (a throughput over a latency band reaching 0)
        group = {"label": "g", "measured": value, "band": [value * 0.9, math.inf], "verdict": verdict}
        group.update(reason="r", provenance="p", rows=["k9"], band_source="b")
        v = Verdict(
            c.id, verdict, "r", c.source, c.kind, c.statement, c.expected, c.tolerance, groups=[group]
        )
        return v

    both = combine_sweeps(c, [("a", reading(0.80, PASS)), ("b", reading(0.81, PASS))])
    assert both.verdict == PASS and "alike in 2 sweeps" in both.reason
    apart = combine_sweeps(c, [("a", reading(0.80, PASS)), ("b", reading(0.95, "FAIL"))])
    assert apart.verdict == "INCONCLUSIVE" and "disagree" in apart.reason
