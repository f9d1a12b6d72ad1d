"""ERROR is not SKIP: natbench's own failures give ERROR (and --strict exits 1); cannot-run-here gives SKIP with
its reason; --explain and the SKIP summary say why; shipped defaults, cases and counted FLOPs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from natbench.claims import ERROR, PASS, SKIP, judge, load_claims
from natbench.claims.schema import load_file
from natbench.cli import main
from natbench.results import COLUMNS, append_row

PSUTIL = "ModuleNotFoundError: No module named 'psutil'"


def op_row(i: int, status: str, **kw) -> dict:
    return {
        "case_id": f"na-{i}",
        "status": status,
        "kind": "op",
        "target": "na",
        "backend": "tiled",
        "device": "cpu",
        "mode": "inference",
        "resolution": 14 * (i + 1),
        "tokens": (14 * (i + 1)) ** 2,
        "kernel_size": 7,
        "preset": "cpu-quick",
        **kw,
    }


def test_all_errored_results_give_error_and_strict_exits_1(tmp_path, capsys):
    for i in range(4):
        append_row(tmp_path, op_row(i, "error", error=PSUTIL))
    args = ["claims", "--results", str(tmp_path), "--filter", "complexity.na.time_linear"]
    assert main([*args, "--json"]) == 1  # an ERROR exits non-zero even without --strict
    (v,) = json.loads(capsys.readouterr().out)
    assert v["verdict"] == ERROR and "every candidate row failed" in v["reason"] and "psutil" in v["reason"]
    assert main([*args, "--strict"]) == 1
    captured = capsys.readouterr()
    assert "ERROR" in captured.out and "FAIL or ERROR" in captured.err


def test_unsupported_rows_are_skip_with_their_reason(tmp_path, capsys):
    for i in range(4):
        append_row(tmp_path, op_row(i, "unsupported", error="needs CUDA: torch.cuda.is_available() is False"))
    args = ["claims", "--results", str(tmp_path), "--filter", "complexity.na.time_linear", "--strict"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "SKIP" in out and "cannot run here" in out and "SKIP by reason (1):" in out


def test_create_model_raising_is_error(monkeypatch, capsys):
    from natbench.claims.measure import model_info as mi
    from natbench.models import info

    def broken(*args, **kwargs):
        raise RuntimeError("broken model code")

    monkeypatch.setattr(info, "create_model", broken)
    mi._model_info.cache_clear()
    try:
        (v,) = judge(None, [c for c in load_claims() if c.id == "nat.table3.nat_mini.params"])
        assert v.verdict == ERROR and "broken model code" in v.reason
        assert main(["claims", "--filter", "nat.table3.nat_mini.macs", "--strict"]) == 1
        assert "ERROR" in capsys.readouterr().out
        assert main(["claims", "--filter", "nat.table3.nat_mini.macs"]) == 1  # ERROR never exits 0
    finally:
        mi._model_info.cache_clear()


def test_row_the_preset_defines_but_the_sweep_lost_is_error():
    claims = [c for c in load_claims() if c.id == "complexity.na.weights_memory_linear"]
    # the sweep ran NA on the reference backend, but none of the rows the claim needs (inference) came back
    rows = [op_row(i, "ok", backend="reference", mode="training", latency_ms=1.0) for i in range(3)]
    df = pd.DataFrame([{**dict.fromkeys(COLUMNS), **r} for r in rows])
    (v,) = judge(df, claims)
    assert v.verdict == ERROR and "the sweep lost them" in v.reason
    # results from before the preset defined them: SKIP, rerun
    df2 = df.assign(backend="tiled")
    (v,) = judge(df2, claims)
    assert v.verdict == SKIP and "rerun natbench sweep --preset" in v.reason


def test_explain_shows_rows_band_tolerance_and_why(capsys):
    assert main(["claims", "--explain", "nat.table3.nat_mini.params"]) == 0
    out = capsys.readouterr().out
    for text in ("nat.table3.nat_mini.params: PASS", "tolerance:  absolute", "accepted", "band", "why:"):
        assert text in out, text


def test_defaults_apply_per_kind_and_claims_override(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        """
title = "t"
[defaults]
source = "a paper"
[defaults.params]
tolerance = { mode = "absolute", value = 1e6 }
measure = { method = "model_info", field = "params" }
[[claim]]
id = "t.a"
statement = "s"
kind = "params"
expected = 20_000_000
measure = { model = "nat_mini" }
[[claim]]
id = "t.b"
source = "another"
statement = "s"
kind = "params"
expected = 1
tolerance = { value = 2e6 }
measure = { method = "unmeasurable", reason = "r" }
"""
    )
    a, b = load_file(path)
    assert a.source == "a paper" and a.measure == {
        "method": "model_info",
        "field": "params",
        "model": "nat_mini",
    }
    assert b.source == "another" and b.tolerance == {"mode": "absolute", "value": 2e6}
    assert b.measure == {"method": "unmeasurable", "reason": "r"}


def test_counted_flops_claims_pass_on_the_reference_ops():
    ids = [
        "complexity.na.flops_linear",
        "complexity.full.flops_quadratic",
        "complexity.na.flops_kernel_linear",
    ]
    verdicts = {v.id: v for v in judge(None, [c for c in load_claims() if c.id in ids])}
    assert {i: v.verdict for i, v in verdicts.items()} == dict.fromkeys(ids, PASS)
    assert verdicts["complexity.full.flops_quadratic"].measured == pytest.approx(2.0, abs=0.01)


def test_pair_rows_give_the_latency_ratio_band():
    from natbench.claims.measure.bands import pair_ratio

    df = pd.DataFrame(
        [
            {
                "kind": "pair",
                "pair_of": ["a", "b"],
                "ratio": 2.0,
                "ratio_ci_low": 1.9,
                "ratio_ci_high": 2.2,
                "metric": "latency",
                "status": "ok",
            }
        ]
    )
    assert pair_ratio(df, "a", "b")[:3] == (2.0, 1.9, 2.2)
    assert pair_ratio(df, "b", "a")[:3] == pytest.approx((0.5, 1 / 2.2, 1 / 1.9))
    assert pair_ratio(df, "a", "c") is None


def test_throughput_ratio_claims_read_the_interleaved_pair():
    from natbench.claims.measure.ratio import measure_ratio

    def frame(rows):
        df = pd.DataFrame(rows)
        return df.reindex(columns=[*df.columns, *(c for c in COLUMNS if c not in df.columns)])

    c = next(c for c in load_claims() if c.id == "dinat.cpu.nat_tiny.throughput_k9_vs_k7")
    common = {"kind": "model", "target": "nat_tiny", "status": "ok", "device": "cpu", "dtype": "float32"}
    common.update(
        batch=1, mode="inference", resolution=224, repeats=5, device_name="CPU X", preset="cpu-quick"
    )
    rows = [  # separate rows: 8 / 10 img/s with wide, drifting bands
        {**common, "case_id": "k9", "kernel_size": 9, "throughput": 8.0, "latency_ms": 125.0},
        {**common, "case_id": "k7", "kernel_size": 7, "throughput": 10.0, "latency_ms": 100.0},
    ]
    for r, (lo, hi) in zip(rows, ((100.0, 150.0), (80.0, 120.0))):
        r.update(latency_ci_low_ms=lo, latency_ci_high_ms=hi)
    pair = {"kind": "pair", "case_id": "p", "pair_of": ["k9", "k7"], "metric": "latency", "status": "ok"}
    pair.update(ratio=1.2, ratio_ci_low=1.19, ratio_ci_high=1.21)  # k9 latency / k7 latency
    (m,) = measure_ratio(c, frame([*rows, pair])).measurements
    assert (m.value, m.low, m.high) == pytest.approx((1 / 1.2, 1 / 1.21, 1 / 1.19))
    assert "interleaved pairs" in m.band_source
    (alone,) = measure_ratio(c, frame(rows)).measurements
    assert alone.value == pytest.approx(0.8) and "pairs" not in alone.band_source


def test_machines_never_mix_in_a_ratio():
    c = next(c for c in load_claims() if c.id == "nat.cpu.memory.nat_mini_below_swin_tiny")
    base = {
        **dict.fromkeys(COLUMNS),
        "status": "ok",
        "kind": "model",
        "device": "cpu",
        "dtype": "float32",
        "mode": "inference",
        "batch": 1,
        "resolution": 224,
        "backend": "auto",
        "preset": "cpu-quick",
    }
    df = pd.DataFrame(
        [
            {**base, "case_id": "n1", "target": "nat_mini", "peak_mem_bytes": 1e8, "machine": "cpu:A"},
            {**base, "case_id": "s1", "target": "swin_tiny", "peak_mem_bytes": 2e8, "machine": "cpu:A"},
            {**base, "case_id": "s2", "target": "swin_tiny", "peak_mem_bytes": 0.5e8, "machine": "cpu:B"},
        ]
    )
    (v,) = judge(df, [c])
    assert v.verdict == PASS and len(v.groups) == 1 and v.groups[0]["rows"] == ["n1", "s1"]


def test_isotropic_models_and_vit_baseline_build_and_count():
    from natbench.models import model_info

    nat, vit = model_info("nat_isotropic_small"), model_info("vit_rpb_small")
    # DiNAT Table 5 compares models of equal size: both about 22M parameters
    assert abs(nat["params"] - 22e6) < 1e6 and abs(vit["params"] - 22e6) < 1e6


def test_layer_cases_follow_swin_rules_and_explicit_attention_runs():
    from natbench.measure.case import measure_case

    timing = {"min_run_time": 0.01, "min_samples": 2, "warmup": 0.0}
    common = {"kernel_size": 7, "heads": 1, "head_dim": 8, "rpb": True}
    small = measure_case(
        {"target": "natbench.claims.cases:swin_layers", "resolution": 7, **common}, timing, False
    )
    big = measure_case(
        {"target": "natbench.claims.cases:swin_layers", "resolution": 14, **common}, timing, False
    )
    assert small["status"] == big["status"] == "ok"
    assert small["kernel"] == "layers:sdpa:window+unshifted" and big["kernel"] == "layers:sdpa:window+shifted"
    na = measure_case(
        {"target": "natbench.claims.cases:na_layers", "backend": "reference", "resolution": 14, **common},
        timing,
        False,
    )
    assert na["status"] == "ok" and na["kernel"] == "layers:reference:gather"
    full = measure_case(
        {"target": "natbench.claims.cases:explicit_attention", "resolution": 7}, timing, False
    )
    assert full["status"] == "ok" and full["kernel"] == "explicit-softmax"


def test_drop_rpb_is_a_case_field_that_keeps_old_ids():
    from natbench.measure.spec import CaseSpec

    plain = CaseSpec.from_dict({"target": "nat_mini"})
    assert plain.drop_rpb is None and CaseSpec.from_dict({"target": "nat_mini", "drop_rpb": False}) == plain
    dropped = CaseSpec.from_dict({"target": "nat_mini", "backend": "natten", "drop_rpb": "true"})
    assert dropped.drop_rpb is True and dropped.case_id != plain.case_id
    assert CaseSpec.from_dict({"target": "na", "drop_rpb": True}).drop_rpb is None  # models only


def test_a_ratio_whose_denominator_rows_all_errored_is_error():
    c = next(c for c in load_claims() if c.id == "fna.cpu.nat_mini_training_tiled_vs_reference")
    base = {
        **dict.fromkeys(COLUMNS),
        "kind": "model",
        "target": "nat_mini",
        "device": "cpu",
        "dtype": "float32",
        "mode": "training",
        "batch": 1,
        "resolution": 112,
        "drop_rpb": True,
        "preset": "cpu-quick",
    }
    df = pd.DataFrame(
        [
            {**base, "case_id": "ref", "backend": "reference", "status": "ok", "latency_ms": 2.0},
            {
                **base,
                "case_id": "tiled",
                "backend": "tiled",
                "status": "error",
                "error": "RuntimeError: no backward",
            },
        ]
    )
    (v,) = judge(df, [c])
    assert v.verdict == ERROR and "no backward" in v.reason
