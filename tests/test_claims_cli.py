"""`natbench claims`: exit codes, --filter, --json/--out, --run, and the CPU judge on natbench's own models."""

from __future__ import annotations

import json

import pytest

from natbench.cli import main
from natbench.results import append_row

CLAIM = """
title = "Test claims"

[[claim]]
id = "t.latency"
source = "test"
statement = "na latency is at most 1 ms"
kind = "latency_ratio"
expected = 1.0
tolerance = {{ mode = "at_most" }}
unverified = {unverified}
measure = {{ method = "row", where = {{ target = "na" }}, field = "latency_ms" }}

[[claim]]
id = "t.skipped"
source = "test"
statement = "needs a GPU"
kind = "speedup"
expected = 2.0
tolerance = {{ mode = "at_least" }}
requires = {{ device = "cuda" }}
measure = {{ method = "row", where = {{ target = "na" }}, field = "latency_ms" }}
"""


def setup(tmp_path, latency: float, unverified: bool = False):
    claims = tmp_path / "claims.toml"
    claims.write_text(CLAIM.format(unverified=str(unverified).lower()))
    results = tmp_path / "results"
    append_row(
        results,
        {
            "case_id": "na-1",
            "status": "ok",
            "kind": "op",
            "target": "na",
            "device": "cpu",
            "latency_ms": latency,
        },
    )
    return ["claims", "--results", str(results), "--claims", str(claims)]


def test_strict_exit_codes(tmp_path, capsys):
    args = setup(tmp_path, latency=2.0)
    assert main(args) == 0
    assert main([*args, "--strict"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "SKIP" in out and "needs CUDA" in out


def test_strict_passes_when_nothing_fails(tmp_path):
    assert main([*setup(tmp_path, latency=0.5), "--strict"]) == 0


def test_strict_ignores_unverified_claims(tmp_path):
    assert main([*setup(tmp_path, latency=2.0, unverified=True), "--strict"]) == 0


def test_json_out_and_filter(tmp_path, capsys):
    out_file = tmp_path / "report" / "claims.json"
    args = setup(tmp_path, latency=0.5)
    assert main([*args, "--json", "--filter", "t.lat*", "--out", str(out_file)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [v["id"] for v in printed] == ["t.latency"]
    v = printed[0]
    assert (v["verdict"], v["measured"], v["expected"], v["kind"]) == ("PASS", 0.5, 1.0, "latency_ratio")
    for key in ("reason", "source", "statement", "tolerance"):
        assert key in v
    assert json.loads(out_file.read_text()) == printed
    assert main([*args, "--filter", "nothing.*"]) == 2


def test_missing_results_dir_is_an_error(tmp_path, capsys):
    assert main(["claims", "--results", str(tmp_path / "nope"), "--filter", "fna.1d*"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_run_uses_the_sweep_api(tmp_path, monkeypatch, capsys):
    """--run goes through natbench.sweep.run_sweep('cpu-quick', DIR); a fake runner stands in for the sweep."""
    import natbench.claims.cli as claims_cli

    calls = []

    def fake_run_sweep(preset, out):
        calls.append((preset, out))
        for r in (14, 28, 56, 112, 224):
            append_row(
                out,
                {
                    "case_id": f"na-{r}",
                    "status": "ok",
                    "kind": "op",
                    "target": "na",
                    "backend": "tiled",
                    "kernel": "tiled:cpu",
                    "device": "cpu",
                    "dtype": "float32",
                    "mode": "inference",
                    "batch": 1,
                    "resolution": r,
                    "tokens": r * r,
                    "kernel_size": 7,
                    "heads": 2,
                    "head_dim": 32,
                    "latency_ms": 0.01 * r * r,
                    "preset": "cpu-quick",
                },
            )

    monkeypatch.setattr(claims_cli, "_run_sweep", fake_run_sweep)
    results = tmp_path / "run"
    assert (
        main(
            ["claims", "--run", "--results", str(results), "--json", "--filter", "complexity.na.time_linear"]
        )
        == 0
    )
    assert calls == [("cpu-quick", results)]
    verdicts = json.loads(capsys.readouterr().out)
    assert [(v["id"], v["verdict"]) for v in verdicts] == [
        ("complexity.na.time_linear[cpu/tiled/tiled:cpu/float32]", "PASS")
    ]
    assert verdicts[0]["measured"] == pytest.approx(1.0)


def test_run_without_sweep_says_so(tmp_path, monkeypatch, capsys):
    import natbench.claims.cli as claims_cli

    def missing(preset, out):
        raise ImportError("No module named 'natbench.sweep'")

    monkeypatch.setattr(claims_cli, "_run_sweep", missing)
    assert main(["claims", "--run", "--results", str(tmp_path / "r"), "--filter", "fna.1d*"]) == 2
    assert "--run needs natbench.sweep" in capsys.readouterr().err


def test_cpu_judge_passes_nat_params_and_macs(capsys):
    models = pytest.importorskip(
        "natbench.models", reason="natbench.models (another part) is not importable yet"
    )
    import torch

    assert (
        main(
            [
                "claims",
                "--json",
                "--filter",
                "nat.table3.nat_*.params",
                "--filter",
                "nat.table3.nat_*.macs",
                "--strict",
            ]
        )
        == 0
    )
    verdicts = {v["id"]: v for v in json.loads(capsys.readouterr().out)}
    assert len(verdicts) == 8 and all(v["verdict"] == "PASS" for v in verdicts.values())
    # independent count: the model's own parameters
    with torch.device("meta"):
        mini = models.create_model("nat_mini", attention_backend="reference")
    assert verdicts["nat.table3.nat_mini.params"]["measured"] == sum(p.numel() for p in mini.parameters())
    assert "model_info('nat_mini'" in verdicts["nat.table3.nat_mini.macs"]["provenance"]
