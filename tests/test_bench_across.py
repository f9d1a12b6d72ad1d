"""The across-sweeps check (benchmarks/test_bench_across.py): coverage counts, widths, verdict flips, exits."""

import json

import pytest

from benchmarks import test_bench_across as across
from natbench import results


def _row(case, median, low, high, machine="cpu:X:1t", **extra):
    return {
        "case_id": case,
        "status": "ok",
        "kind": "op",
        "machine": machine,
        "latency_ms": median,
        "latency_ci_low_ms": low,
        "latency_ci_high_ms": high,
        **extra,
    }


def test_rows_coverage_counts_ordered_pairs_and_widths():
    # a: every interval holds every median; b: the third sweep's median lies outside the others' intervals
    sweeps = [
        [_row("a", 10.0, 9.0, 11.0), _row("b", 10.0, 9.9, 10.1)],
        [_row("a", 10.5, 9.5, 11.5), _row("b", 10.05, 9.95, 10.15)],
        [_row("a", 9.8, 8.8, 10.8), _row("b", 12.0, 11.9, 12.1)],
    ]
    cov = across.rows_coverage(sweeps)["latency"]
    assert (cov.held, cov.pairs) == (6 + 2, 12)
    assert cov.missed == [("b", 2, 6)]
    assert len(cov.widths) == 2 and cov.widths[0] > cov.widths[1]  # b's narrow intervals, wide spread
    assert across.rows_coverage(sweeps)["pair ratio"].pairs == 0


def test_rows_coverage_skips_cases_not_ok_everywhere_and_refuses_two_machines():
    sweeps = [[_row("a", 10.0, 9.0, 11.0)], [{**_row("a", 10.0, 9.0, 11.0), "status": "error"}]]
    assert across.rows_coverage(sweeps)["latency"].pairs == 0
    with pytest.raises(ValueError, match="different machines"):
        across.rows_coverage([[_row("a", 1.0, 0.9, 1.1)], [_row("a", 1.0, 0.9, 1.1, machine="cpu:Y:1t")]])


def _claim(cid, verdict, measured=1.0, band=(0.9, 1.1)):
    return {"id": cid, "verdict": verdict, "measured": measured, "band": list(band)}


def test_claims_agreement_tells_edges_from_flips_and_errors_and_skips_constants():
    sweeps = [
        [_claim("edge", "INCONCLUSIVE", 1.0), _claim("flip", "PASS"), _claim("same", "PASS", 5.0, (5, 5))],
        [
            _claim("edge", "FAIL", 1.2, (1.15, 1.25)),
            _claim("flip", "FAIL"),
            _claim("same", "PASS", 5.0, (5, 5)),
        ],
    ]
    bands, judged, differ = across.claims_agreement(sweeps)
    assert judged == 3
    assert [(c, across.difference(v)) for c, v in differ] == [("edge", "edge"), ("flip", "flip")]
    assert across.difference(["PASS", "ERROR"]) == "error"
    assert across.difference(["FAIL", "ERROR", "PASS"]) == "flip"
    assert across.difference(["PASS", "SKIP"]) == "skip"
    # a claim skipped in one sweep only is a difference; skipped in all, it is not judged
    _, judged, differ = across.claims_agreement([[_claim("s", "SKIP")], [_claim("s", "PASS")]])
    assert (judged, differ) == (1, [("s", ["SKIP", "PASS"])])
    assert across.claims_agreement([[_claim("s", "SKIP")], [_claim("s", "SKIP")]])[1] == 0
    assert bands.pairs == 2  # "same" never varied; "flip" never varied either (1.0 twice)
    assert bands.held == 0


def _sweep(tmp_path, name, median, verdict):
    out = tmp_path / name
    results.append_row(out, _row("a", median, median * 0.95, median * 1.05))
    (out / "claims.json").write_text(
        json.dumps([_claim("c", verdict, median, (median * 0.95, median * 1.05))])
    )
    return str(out)


def test_main_exit_codes(tmp_path, capsys):
    same = [_sweep(tmp_path, f"s{i}", 10.0 + i * 0.1, "PASS") for i in range(3)]
    assert across.main(same) == 0
    assert "1 of 1 claims the same in every sweep" in capsys.readouterr().out
    flipped = same[:2] + [_sweep(tmp_path, "f", 10.1, "FAIL")]
    assert across.main(flipped) == 1
    assert "1 PASS <-> FAIL" in capsys.readouterr().out
    errored = same[:2] + [_sweep(tmp_path, "e", 10.1, "ERROR")]
    assert across.main(errored) == 1
    assert "1 ERROR in some sweeps, 0 SKIP in some" in capsys.readouterr().out
    apart = same[:1] + [_sweep(tmp_path, "far", 20.0, "PASS")]
    assert across.main(apart) == 1  # neither interval holds the other's median
    with pytest.raises(SystemExit) as exc:
        across.main([same[0], str(tmp_path / "missing")])
    assert exc.value.code == 2
    assert "no natbench rows" in capsys.readouterr().err
