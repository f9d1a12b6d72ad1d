"""natbench compare: planted slowdowns are caught, noise and unchanged reruns are not, odd cases are listed."""

from __future__ import annotations

import json

import pytest

from natbench.cli import main as cli_main
from natbench.compare import compare, ratio_band
from natbench.results import append_row


def row(case_id, ms, iqr, status="ok"):
    return {
        "case_id": case_id,
        "status": status,
        "kind": "op",
        "target": "na",
        "backend": "tiled",
        "device": "cpu",
        "dtype": "float32",
        "resolution": 32,
        "kernel_size": 7,
        "latency_ms": ms,
        "latency_iqr_ms": iqr,
    }


def write(directory, cases):
    for case_id, ms, iqr, *status in cases:
        append_row(directory, row(case_id, ms, iqr, *status))
    return directory


BASE = [("a", 10.0, 0.4), ("b", 20.0, 0.5), ("c", 5.0, 0.1), ("noisy", 10.0, 6.0)]


@pytest.fixture()
def base(tmp_path):
    return write(tmp_path / "base", BASE)


def test_unchanged_rerun_within_iqr_passes(base, tmp_path, capsys):
    # every median moves by less than half its IQR: noise, not change
    new = write(
        tmp_path / "new", [("a", 10.15, 0.4), ("b", 19.8, 0.5), ("c", 5.04, 0.1), ("noisy", 10.1, 6.0)]
    )
    result = compare(base, new)
    assert [c.verdict for c in result.cases] == ["unchanged"] * 4
    assert cli_main(["compare", str(base), str(new)]) == 0
    assert "0 regression(s)" in capsys.readouterr().out


def test_planted_slowdown_is_a_regression(base, tmp_path, capsys):
    new = write(tmp_path / "new", [("a", 13.0, 0.4), ("b", 20.0, 0.5), ("c", 4.0, 0.1), ("noisy", 14.0, 6.0)])
    result = compare(base, new, threshold=0.1)
    verdicts = {c.case_id: c.verdict for c in result.cases}
    # a: 1.3x slower, far outside its IQR; c: 1.25x faster; noisy: 1.4x slower but inside its 6 ms IQR
    assert verdicts == {"a": "regression", "b": "unchanged", "c": "improvement", "noisy": "unchanged"}
    a = next(c for c in result.cases if c.case_id == "a")
    assert a.ratio == pytest.approx(1.3)
    assert (a.ratio_low, a.ratio_high) == pytest.approx(((13.0 - 0.2) / 10.2, (13.0 + 0.2) / 9.8))
    assert cli_main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr().out
    assert "1 regression(s), 1 improvement(s), 2 unchanged" in out
    # a larger threshold lets the 30 % slowdown through
    assert cli_main(["compare", str(base), str(new), "--threshold", "0.5"]) == 0


def test_missing_and_not_ok_cases_are_listed_not_fatal(base, tmp_path, capsys):
    new = write(tmp_path / "new", [("a", 10.0, 0.4), ("b", None, None, "error"), ("d", 1.0, 0.1)])
    result = compare(base, new)
    assert [c.case_id for c in result.cases] == ["a"]
    assert result.only_in_base == ["c", "noisy"]
    assert result.only_in_new == ["d"]
    assert [(d["case_id"], d["base_status"], d["new_status"]) for d in result.not_comparable] == [
        ("b", "ok", "error")
    ]
    assert cli_main(["compare", str(base), str(new), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["only_in_base"] == ["c", "noisy"] and report["only_in_new"] == ["d"]
    assert report["not_comparable"][0]["case_id"] == "b" and report["regressions"] == []


def test_missing_directory_and_missing_results_file_are_clear_errors(base, tmp_path, capsys):
    assert cli_main(["compare", str(base), str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["compare", str(tmp_path / "empty"), str(base)]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err
    with pytest.raises(ValueError, match="threshold"):
        compare(base, base, threshold=-1)


def test_ratio_band_without_noise_is_the_ratio():
    assert ratio_band(10.0, 0.0, 12.0, 0.0) == pytest.approx((1.2, 1.2))


def test_cases_from_another_machine_are_not_compared(base, tmp_path):
    new = tmp_path / "new"
    for case_id, ms, iqr in BASE:
        append_row(new, {**row(case_id, ms * 1.5, iqr), "device_name": "another CPU"})
    result = compare(base, new)
    assert result.cases == [] and not result.regressions
    assert {d["reason"] for d in result.not_comparable} == {
        "measured on different machines: device_name None vs another CPU"
    }
