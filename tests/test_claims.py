"""Claims registry: schema validation, tolerance logic, measurement from synthetic results, scaling fits."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from natbench.claims import (
    FAIL,
    INCONCLUSIVE,
    KINDS,
    PASS,
    SKIP,
    TOLERANCE_MODES,
    ClaimError,
    fit_power_law,
    judge,
    load_claims,
)
from natbench.claims.judge import decide
from natbench.claims.schema import DATA_DIR, load_file, parse_claim
from natbench.results import COLUMNS

FUSED_ENV = {"natten": {"has_libnatten": True}}


def frame(rows: list[dict]) -> pd.DataFrame:
    full = [{**dict.fromkeys(COLUMNS), "status": "ok", "source": "synthetic", **r} for r in rows]
    return pd.DataFrame(full, columns=[*COLUMNS, "source"])


def claim(**kw):
    raw = {
        "id": "test.claim",
        "source": "test",
        "statement": "a test claim",
        "kind": "throughput_ratio",
        "expected": 1.0,
        "tolerance": {"mode": "relative", "value": 0.1},
        "measure": {"method": "row", "field": "latency_ms"},
    }
    raw.update(kw)
    raw = {k: v for k, v in raw.items() if v is not None}  # expected=None: use expected_ratio instead
    return parse_claim(raw, "test.toml", "Test")


# ---------------------------------------------------------------- tolerance logic


@pytest.mark.parametrize(
    ("tol", "value", "low", "high", "verdict"),
    [
        ({"mode": "absolute", "value": 0.5}, 10.3, 10.3, 10.3, PASS),
        ({"mode": "absolute", "value": 0.5}, 10.6, 10.6, 10.6, FAIL),
        ({"mode": "absolute", "value": 0.5}, 10.4, 10.3, 10.7, INCONCLUSIVE),
        ({"mode": "relative", "value": 0.1}, 10.9, 10.85, 10.95, PASS),
        ({"mode": "relative", "value": 0.1}, 8.0, 7.9, 8.5, FAIL),
        ({"mode": "relative", "value": 0.1}, 9.05, 8.8, 9.3, INCONCLUSIVE),
        ({"mode": "at_least"}, 12.0, 11.0, 13.0, PASS),
        ({"mode": "at_least", "value": 1.0}, 9.5, 9.2, 9.8, PASS),
        ({"mode": "at_least"}, 9.0, 8.0, 9.5, FAIL),
        ({"mode": "at_least"}, 10.1, 9.5, 10.5, INCONCLUSIVE),
        ({"mode": "at_most"}, 9.0, 8.0, 9.9, PASS),
        ({"mode": "at_most"}, 11.0, 10.5, 11.5, FAIL),
        ({"mode": "at_most"}, 9.9, 9.5, 10.2, INCONCLUSIVE),
    ],
)
def test_decide_each_tolerance_mode(tol, value, low, high, verdict):
    got, reason = decide(10.0, tol, value, low, high)
    assert got == verdict, reason


def test_decide_exact():
    assert decide([[1, 2]], {"mode": "exact"}, [[1, 2]], None, None)[0] == PASS
    assert decide([[1, 2]], {"mode": "exact"}, [[1, 3]], None, None)[0] == FAIL


# ---------------------------------------------------------------- schema


def test_shipped_claims_validate_and_cover_the_brief():
    claims = load_claims()
    assert len(claims) >= 40
    ids = [c.id for c in claims]
    assert len(ids) == len(set(ids))
    for c in claims:
        assert c.kind in KINDS and c.tolerance["mode"] in TOLERANCE_MODES and c.statement and c.source
    models = [
        "nat_mini",
        "nat_tiny",
        "nat_small",
        "nat_base",
        "swin_tiny",
        "swin_small",
        "swin_base",
        "convnext_tiny",
        "convnext_small",
        "convnext_base",
    ]
    for m in models:
        for what in ("params", "macs", "top1"):
            assert any(c.id.endswith(f"{m}.{what}") for c in claims), (m, what)
    kinds = {c.kind for c in claims}
    assert {
        "throughput_ratio",
        "memory_ratio",
        "latency_ratio",
        "scaling_exponent",
        "feature_shape",
        "speedup",
    } <= kinds
    scaling = [c for c in claims if c.kind == "scaling_exponent"]
    assert {c.measure["y"] for c in scaling if c.method == "scaling"} == {"latency_ms", "peak_mem_bytes"}
    by_id = {c.id: c for c in claims}
    # the corrected figures: x % improvement = 1 + x/100; 39 % is DiNAT-s-B in Table 8 (verified)
    assert by_id["fna.2d.speedup_over_unfused"].expected == pytest.approx(10.58)
    assert by_id["fna.e2e.training_up_to_39pct"].expected == pytest.approx(1.393)
    assert not by_id["fna.e2e.training_up_to_39pct"].unverified
    assert by_id["swin.v100.throughput.swin_base_vs_swin_tiny"].requires["gpu"] == "V100"
    assert not any(c.unverified for c in claims if c.id.startswith("convnext."))
    assert by_id["nat.natten.speed.r56"].measure["where"]["kernel_size"] == 7  # one curve at k = 7
    # every shipped file validates on its own too
    for path in sorted(DATA_DIR.glob("*.toml")):
        assert load_file(path)


def test_unknown_kind_names_file_and_claim(tmp_path):
    f = tmp_path / "bad.toml"
    f.write_text(
        'title = "t"\n[[claim]]\nid = "x.bad"\nsource = "s"\nstatement = "s"\nkind = "speediness"\n'
        'expected = 1.0\ntolerance = { mode = "relative", value = 0.1 }\n'
        'measure = { method = "row", field = "latency_ms" }\n'
    )
    with pytest.raises(ClaimError, match=r"bad\.toml: claim x\.bad: unknown kind 'speediness'"):
        load_claims([f])


def test_malformed_toml_names_file(tmp_path):
    f = tmp_path / "broken.toml"
    f.write_text('[[claim]]\nid = "x"\nsource = \n')
    with pytest.raises(ClaimError, match=r"broken\.toml: not valid TOML"):
        load_claims([tmp_path])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tolerance": {"mode": "roughly", "value": 1}}, "unknown tolerance mode 'roughly'"),
        ({"tolerance": {"mode": "relative"}}, "needs a `value`"),
        (
            {"measure": {"method": "row", "field": "latency_ms", "where": {"colour": "red"}}},
            "unknown result columns",
        ),
        ({"measure": {"method": "guess"}}, "unknown measure method 'guess'"),
        ({"requires": {"device": "tpu"}}, "requires.device"),
        ({"expected_ratio": [1, 2]}, "exactly one of `expected`"),
        ({"bogus": 1}, "unknown fields"),
    ],
)
def test_schema_errors(change, message):
    with pytest.raises(ClaimError, match=r"test\.toml: claim test\.claim: .*" + message.replace("`", ".")):
        claim(**change)


def test_missing_field_and_duplicate_id(tmp_path):
    with pytest.raises(ClaimError, match="missing required fields \\['statement'\\]"):
        parse_claim(
            {
                "id": "a",
                "source": "s",
                "kind": "params",
                "expected": 1,
                "tolerance": {"mode": "exact"},
                "measure": {"method": "model_info", "model": "nat_mini", "field": "params"},
            },
            "f.toml",
            "t",
        )
    body = (
        '[[claim]]\nid = "dup"\nsource = "s"\nstatement = "s"\nkind = "params"\nexpected = 1\n'
        'tolerance = { mode = "exact" }\nmeasure = { method = "unmeasurable", reason = "r" }\n'
    )
    (tmp_path / "a.toml").write_text(body)
    (tmp_path / "b.toml").write_text(body)
    with pytest.raises(ClaimError, match="duplicate id"):
        load_claims([tmp_path])


def test_expected_ratio_is_computed():
    assert claim(expected=None, expected_ratio=[1541, 1730]).expected == pytest.approx(1541 / 1730)


# ---------------------------------------------------------------- judging synthetic results

RATIO = {
    "method": "ratio",
    "where": {"kind": "model"},
    "numerator": {"target": "nat_tiny"},
    "denominator": {"target": "swin_tiny"},
    "field": "throughput",
    "match": ["device", "device_name", "dtype", "batch"],
}


def model_rows(nat_lat, swin_lat, iqr=0.0, device="cuda", preset="paper-table3"):
    base = {
        "kind": "model",
        "device": device,
        "device_name": "GPU-X",
        "dtype": "float16",
        "batch": 256,
        "preset": preset,
        "latency_iqr_ms": iqr,
    }
    return frame(
        [
            {**base, "target": "nat_tiny", "latency_ms": nat_lat},
            {**base, "target": "swin_tiny", "latency_ms": swin_lat},
        ]
    )


def ratio_claim(**kw):
    kw = {
        "expected": None,
        "expected_ratio": [1541, 1730],
        "measure": RATIO,
        "requires": {"device": "cuda"},
        "presets": ["paper-table3"],
        **kw,
    }
    return claim(**kw)


def test_ratio_pass_fail_inconclusive():
    c = ratio_claim()
    # throughput ratio = swin latency / nat latency (same batch)
    (v,) = judge(model_rows(100.0, 89.0), [c])
    assert v.verdict == PASS and v.measured == pytest.approx(0.89)
    (v,) = judge(model_rows(200.0, 89.0), [c])
    assert v.verdict == FAIL and v.measured == pytest.approx(0.445)
    (v,) = judge(model_rows(100.0, 89.0, iqr=30.0), [c])
    assert v.verdict == INCONCLUSIVE and v.band[0] < 0.8 < v.band[1]


def test_ratio_skips_with_reasons():
    c = ratio_claim()
    assert judge(None, [c])[0].verdict == SKIP
    v = judge(model_rows(100.0, 89.0, device="cpu"), [c])[0]
    assert v.verdict == SKIP and v.reason.startswith("needs CUDA")
    v = judge(model_rows(100.0, 89.0, preset="smoke"), [c])[0]
    assert (
        v.verdict == SKIP
        and "no results for preset paper-table3 (run natbench sweep --preset paper-table3" in v.reason
    )


def test_each_claim_with_one_failing_group_fails():
    c = ratio_claim()  # aggregate "each" by default: every group must pass
    df = pd.concat([model_rows(100.0, 89.0), model_rows(200.0, 89.0).assign(device_name="GPU-Y")])
    (v,) = judge(df, [c])
    assert v.verdict == FAIL and "a group fails" in v.reason and len(v.groups) == 2
    assert [g["verdict"] for g in v.groups] == [PASS, FAIL]
    # one group inconclusive, none failing: INCONCLUSIVE, not PASS
    df = pd.concat([model_rows(100.0, 89.0), model_rows(100.0, 89.0, iqr=30.0).assign(device_name="GPU-Y")])
    assert judge(df, [c])[0].verdict == INCONCLUSIVE


UP_TO = {**RATIO, "aggregate": "best"}


def up_to_claim():
    # "up to 1.4x": the best group's whole band must clear 1.4
    return ratio_claim(expected=1.4, expected_ratio=None, tolerance={"mode": "at_least"}, measure=UP_TO)


def test_up_to_claim_is_judged_on_intervals_not_the_max_median():
    c = up_to_claim()
    # throughput ratio = swin latency / nat latency. Group A: 1.5x with a tight band clears 1.4: PASS.
    tight = model_rows(100.0, 150.0, iqr=2.0)
    noisy_high = model_rows(100.0, 160.0, iqr=60.0).assign(device_name="GPU-Y")
    (v,) = judge(pd.concat([tight, noisy_high]), [c])
    assert v.verdict == PASS and "best group" in v.reason and "GPU-X" in v.reason
    # Only a noisy group whose median (1.6x) is above 1.4 but whose band reaches below it: INCONCLUSIVE,
    # though the max of the medians would say PASS (winner's curse).
    low = model_rows(100.0, 110.0, iqr=2.0)
    (v,) = judge(pd.concat([low, noisy_high]), [c])
    assert v.verdict == INCONCLUSIVE and max(g["measured"] for g in v.groups) > 1.4
    # no group can reach it: FAIL
    (v,) = judge(pd.concat([low, model_rows(100.0, 120.0).assign(device_name="GPU-Y")]), [c])
    assert v.verdict == FAIL


def test_up_to_needs_a_one_sided_tolerance_and_points_a_two_sided_one():
    with pytest.raises(ClaimError, match="one-sided"):
        ratio_claim(
            expected=1.4, expected_ratio=None, tolerance={"mode": "relative", "value": 0.1}, measure=UP_TO
        )
    with pytest.raises(ClaimError, match="point figures"):
        claim(
            kind="params",
            tolerance={"mode": "at_least"},
            measure={"method": "model_info", "model": "nat_mini", "field": "params"},
        )
    with pytest.raises(ClaimError, match="best"):
        ratio_claim(measure={**RATIO, "aggregate": "max"})


def test_libnatten_skip_reason():
    na = {
        "method": "ratio",
        "where": {"kind": "op"},
        "numerator": {"target": "window"},
        "denominator": {
            "target": "na",
            "backend": "natten",
            "kernel": ["natten:hopper-*", "natten:cutlass-*"],
        },
        "field": "latency_ms",
        "match": ["device", "resolution"],
    }
    c = claim(kind="latency_ratio", measure=na, requires={"device": "cuda", "libnatten": True})
    base = {"kind": "op", "device": "cuda", "resolution": 56, "env": {"natten": {"has_libnatten": False}}}
    df = frame(
        [
            {**base, "target": "window", "latency_ms": 1.0},
            {**base, "target": "na", "backend": "natten", "kernel": "natten:flex-fna", "latency_ms": 1.0},
        ]
    )
    (v,) = judge(df, [c])
    assert v.verdict == SKIP and v.reason.startswith("needs natten's compiled kernels")
    df.loc[df["target"] == "na", "kernel"] = "natten:hopper-fna"
    df.loc[df["target"] == "na", "latency_ms"] = 0.8
    (v,) = judge(df, [c])
    assert v.verdict == FAIL and v.measured == pytest.approx(1.25)  # 25 % faster, expected 1.0 +- 10 %


def test_top1_band_from_subset_size_and_named_checkpoint():
    c = claim(
        kind="top1",
        expected=83.2,
        tolerance={"mode": "absolute", "value": 0.2},
        requires={"imagenet": True},
        measure={"method": "top1", "where": {"kind": "accuracy", "target": "nat_tiny"}},
    )
    assert judge(frame([]), [c])[0].reason.startswith("needs ImageNet at --data")
    acc = {"kind": "accuracy", "target": "nat_tiny", "top1": 83.1, "checkpoint": "shi-labs/nat-tiny-in1k-224"}
    assert judge(frame([{**acc, "count": 50_000}]), [c])[0].verdict == PASS
    # a top-1 without a named checkpoint is not the paper's model
    (v,) = judge(frame([{**acc, "count": 50_000, "checkpoint": None}]), [c])
    assert v.verdict == SKIP and "named checkpoint" in v.reason
    v = judge(frame([{**acc, "count": 500}]), [c])[0]
    # independent: 95 % binomial band of 500 images with finite-population correction
    se = math.sqrt(0.831 * 0.169 / 500 * (50_000 - 500) / 49_999) * 100
    assert v.verdict == INCONCLUSIVE and v.band == pytest.approx([83.1 - 1.96 * se, 83.1 + 1.96 * se])


def test_unmeasurable_is_skip():
    c = claim(measure={"method": "unmeasurable", "reason": "natbench measures 2-D only"})
    (v,) = judge(frame([]), [c])
    assert v.verdict == SKIP and v.reason == "natbench measures 2-D only"


# ---------------------------------------------------------------- scaling


def test_fit_recovers_known_exponent_with_ci():
    rng = np.random.default_rng(0)
    x = np.repeat([196.0, 784.0, 3136.0, 12544.0, 50176.0], 3)
    y = 3e-4 * x**1.5 * np.exp(rng.normal(0, 0.03, x.size))
    fit = fit_power_law(x, y)
    assert abs(fit.exponent - 1.5) < 0.05 and 0 < fit.ci_high - fit.ci_low < 0.2
    # the 95 % CI covers the true exponent in about 95 % of repeated experiments
    covered = 0
    for _ in range(400):
        y = 3e-4 * x**1.5 * np.exp(rng.normal(0, 0.05, x.size))
        f = fit_power_law(x, y)
        covered += f.ci_low < 1.5 < f.ci_high
    assert 0.91 < covered / 400 < 0.99
    # exact data: zero-width CI
    exact = fit_power_law([1, 2, 4, 8], [3, 6, 12, 24])
    assert exact.exponent == pytest.approx(1.0) and exact.ci_high - exact.ci_low == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="3 distinct"):
        fit_power_law([1, 2], [1, 2])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2, 3], [0, 1, 2])


def scaling_rows(backend, exponent, noise=0.0, resolutions=(7, 14, 28, 56, 112, 224), seed=1):
    rng = np.random.default_rng(seed)
    rows = []
    for r in resolutions:
        t = r * r
        lat = 1e-3 * t**exponent * math.exp(rng.normal(0, noise)) + (
            5.0 if r == 7 else 0.0
        )  # overhead at 7x7
        rows.append(
            {
                "kind": "op",
                "target": "na",
                "backend": backend,
                "kernel": f"{backend}:k",
                "device": "cpu",
                "dtype": "float32",
                "mode": "inference",
                "batch": 1,
                "resolution": r,
                "tokens": t,
                "kernel_size": 7,
                "heads": 2,
                "head_dim": 32,
                "latency_ms": lat,
                "peak_mem_bytes": 100.0 * t,
                "preset": "cpu-quick",
            }
        )
    return rows


def test_scaling_one_verdict_per_backend():
    c = claim(
        kind="scaling_exponent",
        expected=1.0,
        tolerance={"mode": "absolute", "value": 0.15},
        presets=["cpu-quick"],
        measure={
            "method": "scaling",
            "where": {"kind": "op", "target": "na"},
            "y": "latency_ms",
            "largest": 5,
        },
    )
    df = frame(
        scaling_rows("tiled", 1.0) + scaling_rows("natten", 2.0) + scaling_rows("flex", 1.1, noise=0.4)
    )
    verdicts = {v.id: v for v in judge(df, [c])}
    assert verdicts["test.claim[cpu/tiled/tiled:k/float32]"].verdict == PASS
    natten = verdicts["test.claim[cpu/natten/natten:k/float32]"]
    assert natten.verdict == FAIL and natten.measured == pytest.approx(2.0, abs=1e-6)
    assert verdicts["test.claim[cpu/flex/flex:k/float32]"].verdict == INCONCLUSIVE
    # the 7x7 overhead point is outside the 5 largest maps, so the tiled fit is exact
    assert verdicts["test.claim[cpu/tiled/tiled:k/float32]"].measured == pytest.approx(1.0, abs=1e-6)
    mem = claim(
        kind="scaling_exponent",
        expected=1.0,
        tolerance={"mode": "absolute", "value": 0.15},
        measure={"method": "scaling", "where": {"target": "na"}, "y": "peak_mem_bytes"},
    )
    assert all(v.verdict == PASS for v in judge(df, [mem]))


def test_scaling_too_few_points_skips():
    c = claim(
        kind="scaling_exponent",
        expected=1.0,
        tolerance={"mode": "absolute", "value": 0.15},
        measure={"method": "scaling", "y": "latency_ms"},
    )
    (v,) = judge(frame(scaling_rows("tiled", 1.0, resolutions=(14, 28))), [c])
    assert v.verdict == SKIP and "5 distinct tokens" in v.reason


def test_shipped_scaling_claims_on_synthetic_sweep():
    """The shipped complexity claims give per-backend verdicts: natten's quadratic CPU path FAILs the linear claim."""
    claims = [c for c in load_claims() if c.id == "complexity.na.time_linear"]
    df = frame(scaling_rows("tiled", 1.0) + scaling_rows("natten", 2.0))
    verdicts = {v.id: v.verdict for v in judge(df, claims)}
    assert verdicts == {
        "complexity.na.time_linear[cpu/natten/natten:k/float32]": FAIL,
        "complexity.na.time_linear[cpu/tiled/tiled:k/float32]": PASS,
    }


def test_verdict_json_fields():
    c = ratio_claim()
    d = judge(model_rows(100.0, 89.0), [c])[0].to_dict()
    for key in (
        "id",
        "verdict",
        "reason",
        "source",
        "kind",
        "expected",
        "measured",
        "statement",
        "tolerance",
    ):
        assert key in d
    assert isinstance(d["measured"], float) and d["provenance"]


def test_shipped_gpu_claims_read_rows_shaped_like_the_presets():
    """Rows as the na-vs-wsa / paper-table3 presets write them reach the shipped GPU claims (not SKIP)."""
    layer = {
        "kind": "custom",
        "device": "cuda",
        "device_name": "NVIDIA A100-SXM4-80GB",
        "dtype": "float16",
        "mode": "inference",
        "batch": 1,
        "resolution": 56,
        "kernel_size": 7,
        "heads": 4,
        "head_dim": 32,
        "rpb": False,
        "preset": "na-vs-wsa",
        "env": FUSED_ENV,
    }
    na = {
        **layer,
        "target": "natbench.claims.cases:na_layers",
        "backend": "natten",
        "kernel": "layers:natten:hopper-fna",
        "latency_ms": 1.0,
        "peak_mem_bytes": 81e6,
    }
    window = {
        **layer,
        "target": "natbench.claims.cases:swin_layers",
        "backend": "auto",
        "kernel": "layers:sdpa:window+shifted",
        "latency_ms": 1.32,
        "peak_mem_bytes": 100e6,
    }
    model = {
        "kind": "model",
        "device": "cuda",
        "device_name": "NVIDIA A100-SXM4-80GB",
        "dtype": "float16",
        "mode": "inference",
        "batch": 256,
        "resolution": 224,
        "backend": "auto",
        "preset": "paper-table3",
    }
    df = frame(
        [
            na,
            window,
            {**model, "target": "nat_tiny", "throughput": 1541.0, "peak_mem_bytes": 2.5e9},
            {**model, "target": "swin_tiny", "throughput": 1730.0, "peak_mem_bytes": 4.8e9},
        ]
    )
    wanted = [
        "nat.natten.speed.r56",
        "nat.natten.memory.r56",
        "nat.table3.throughput.nat_tiny_vs_swin_tiny",
        "nat.table3.memory.nat_tiny_vs_swin_tiny",
        "nat.table3.memory.nat_tiny_below_swin_tiny",
    ]
    claims = [c for c in load_claims() if c.id in wanted]
    verdicts = {v.id: v for v in judge(df, claims)}
    assert {k: v.verdict for k, v in verdicts.items()} == dict.fromkeys(wanted, PASS)
    assert verdicts["nat.natten.speed.r56"].measured == pytest.approx(1.32)
    # speed-up 0.5x instead of 1.32x: FAIL
    slow = df.copy()
    slow.loc[slow["target"] == na["target"], "latency_ms"] = 2.64
    assert judge(slow, [c for c in claims if c.id == "nat.natten.speed.r56"])[0].verdict == FAIL
    # the A100 throughput ratio is not judged on another GPU
    other = df.assign(device_name="NVIDIA H200")
    v = judge(other, [c for c in claims if c.id == "nat.table3.throughput.nat_tiny_vs_swin_tiny"])[0]
    assert v.verdict == SKIP and "A100" in v.reason
    # natten without libnatten (its Flex path): the layer-level claims SKIP and say why
    flex = df.copy()
    flex.loc[flex["target"] == na["target"], "kernel"] = "layers:natten:flex-fna"
    v = judge(flex, [c for c in claims if c.id == "nat.natten.speed.r56"])[0]
    assert v.verdict == SKIP and "needs natten's compiled kernels" in v.reason


def test_judge_accepts_a_table_with_only_some_columns():
    df = pd.DataFrame([{"status": "ok", "kind": "op", "target": "na", "latency_ms": 0.9}])
    c = claim(
        kind="latency_ratio", measure={"method": "row", "where": {"target": "na"}, "field": "latency_ms"}
    )
    assert judge(df, [c])[0].verdict == PASS
