"""natbench compare: a test over processes plus the threshold; exit 0 / 1 / 2 each with its reason."""

from __future__ import annotations

import json

import numpy as np
import pytest

from natbench.cli import main as cli_main
from natbench.compare import compare
from natbench.results import append_row

RNG = np.random.default_rng(0)


def row(case_id, process_ms, status="ok", **extra):
    med = float(np.median(process_ms)) if process_ms else None
    out = {
        "case_id": case_id,
        "status": status,
        "kind": "op",
        "target": "na",
        "backend": "tiled",
        "device": "cpu",
        "device_name": "CPU X",
        "threads": 2,
        "dtype": "float32",
        "resolution": 32,
        "kernel_size": 7,
        "batch": 1,
        "latency_ms": med,
        "latency_process_ms": list(process_ms) if process_ms else None,
        "repeats": len(process_ms) if process_ms else 0,
    }
    out.update(extra)
    return out


def noisy(centre, n=5, cv=0.03):
    return [float(v) for v in centre * (1 + cv * RNG.standard_normal(n))]


def write(directory, rows):
    for r in rows:
        append_row(directory, r)
    return directory


def write_raw(directory, rows):
    """Rows with columns this branch does not declare (issue-14's `machine`), as another writer would."""
    directory.mkdir(parents=True)
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return directory


def test_a_a_passes_and_a_planted_slowdown_is_a_regression(tmp_path, capsys):
    base = write(tmp_path / "base", [row("a", noisy(10)), row("b", noisy(20)), row("c", noisy(5))])
    same = write(tmp_path / "same", [row("a", noisy(10)), row("b", noisy(20)), row("c", noisy(5))])
    slow = write(tmp_path / "slow", [row("a", noisy(13)), row("b", noisy(20)), row("c", noisy(4))])
    assert cli_main(["compare", str(base), str(same)]) == 0
    assert "0 regression(s)" in capsys.readouterr().out
    result = compare(base, slow)
    verdicts = {c.case_id: c.verdict for c in result.cases}
    assert verdicts == {"a": "regression", "b": "unchanged", "c": "improvement"}
    assert "Mann-Whitney" in result.cases[0].test and result.cases[0].p_value is not None
    assert cli_main(["compare", str(base), str(slow)]) == 1
    out = capsys.readouterr().out
    assert "1 regression(s), 1 improvement(s), 1 unchanged" in out


def test_large_ratio_that_the_noise_explains_is_not_a_regression(tmp_path):
    # medians 10 vs 13, but the processes overlap: the test does not find a slowdown
    base = write(tmp_path / "base", [row("a", [6.0, 10.0, 16.0])])
    new = write(tmp_path / "new", [row("a", [5.0, 13.0, 15.0])])
    (case,) = compare(base, new).cases
    assert case.ratio > 1.1 and case.verdict == "unchanged" and case.p_value > 0.05
    assert "not significant (3 vs 3 processes): more processes (--repeats) might decide" in case.test


def test_a_ten_percent_slowdown_is_a_regression_at_the_default_threshold(tmp_path):
    base = write(tmp_path / "base", [row("a", [10.0, 10.1, 9.9, 10.2, 9.8])])
    new = write(tmp_path / "new", [row("a", [10.8, 10.6, 10.9, 10.7, 11.0])])  # 1.08: noise scatters 1.10
    (case,) = compare(base, new).cases
    assert case.verdict == "regression" and case.p_value < 0.05
    assert compare(base, new, threshold=0.1).cases[0].verdict == "unchanged"


def test_significant_but_small_change_is_not_a_regression(tmp_path):
    base = write(tmp_path / "base", [row("a", [10.0, 10.01, 10.02, 10.03])])
    new = write(tmp_path / "new", [row("a", [10.5, 10.51, 10.52, 10.53])])
    (case,) = compare(base, new, threshold=0.1).cases
    assert case.p_value < 0.05 and case.verdict == "unchanged"
    assert compare(base, new, threshold=0.02).cases[0].verdict == "regression"


def test_nothing_comparable_exits_2_with_the_reason(tmp_path, capsys):
    base = write(tmp_path / "base", [row("a", noisy(10)), row("b", noisy(10), status="error")])
    other = write(
        tmp_path / "other",
        [row("a", noisy(10), device_name="CPU Y"), row("b", noisy(10), status="ok")],
    )
    assert cli_main(["compare", str(base), str(other)]) == 2
    out = capsys.readouterr().out
    assert "a: measured on different machines: device_name CPU X vs CPU Y" in out
    assert "b: not ok in both: base error, new ok" in out
    assert "(nothing comparable" in out


def test_machine_column_and_missing_device_names(tmp_path):
    # NaN device names on both sides are no mismatch; a differing `machine` column is
    base = write_raw(tmp_path / "base", [row("a", noisy(10), device_name=None, machine="cpu:X:2t")])
    same = write_raw(tmp_path / "same", [row("a", noisy(10), device_name=None, machine="cpu:X:2t")])
    other = write_raw(tmp_path / "other", [row("a", noisy(10), device_name=None, machine="cpu:Y:2t")])
    assert compare(base, same).exit_code == 0
    result = compare(base, other)
    assert result.exit_code == 2
    assert "machine cpu:X:2t vs cpu:Y:2t" in result.not_comparable[0]["reason"]


def test_bad_input_exits_2(tmp_path, capsys):
    base = write(tmp_path / "base", [row("a", noisy(10))])
    assert cli_main(["compare", str(base), str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli_main(["compare", str(base), str(tmp_path / "empty")]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err
    assert cli_main(["compare", str(base), str(base), "--threshold", "-1"]) == 2
    assert cli_main(["compare", str(base), str(base), "--filter", "zzz"]) == 2
    assert "matches no case" in capsys.readouterr().err


def test_old_rows_fall_back_to_samples_and_say_so(tmp_path):
    def old(case_id, samples):
        r = row(case_id, None)
        r.update(latency_ms=float(np.median(samples)), latency_samples_ms=samples)
        for k in ("latency_process_ms", "repeats"):
            r.pop(k)
        return r

    base = write(tmp_path / "base", [old("a", noisy(10, 8))])
    new = write(tmp_path / "new", [old("a", noisy(15, 8))])
    (case,) = compare(base, new).cases
    assert case.verdict == "regression"
    assert "within-run samples" in case.test and "between-run noise not measured" in case.test


def test_memory_and_throughput_metrics(tmp_path, capsys):
    mib = 2**20
    base = write(
        tmp_path / "base",
        [row("m", noisy(10), peak_mem_bytes=100 * mib, peak_mem_process_bytes=[100 * mib] * 3, kind="model")],
    )
    new = write(
        tmp_path / "new",
        [row("m", noisy(10), peak_mem_bytes=130 * mib, peak_mem_process_bytes=[130 * mib] * 3, kind="model")],
    )
    (case,) = compare(base, new, metric="memory").cases
    assert case.verdict == "regression" and case.ratio == pytest.approx(1.3)
    assert cli_main(["compare", str(base), str(new), "--metric", "memory"]) == 1
    capsys.readouterr()
    # throughput: higher is better, so a 30 % longer latency is a throughput regression
    base_t = write(tmp_path / "bt", [row("m", noisy(10), throughput=100.0, kind="model")])
    new_t = write(tmp_path / "nt", [row("m", noisy(13), throughput=100 / 1.3, kind="model")])
    (case,) = compare(base_t, new_t, metric="throughput").cases
    assert case.verdict == "regression" and case.ratio == pytest.approx(1 / 1.3)
    assert cli_main(["compare", str(base_t), str(new_t), "--metric", "throughput", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["exit_code"] == 1


def test_filter_and_pair_rows(tmp_path):
    pair = {"case_id": "pair-a--b", "kind": "pair", "status": "ok", "ratio": 1.2, "pair_of": ["a", "b"]}
    base = write(tmp_path / "base", [row("na-a", noisy(10)), row("win-b", noisy(10)), pair])
    new = write(tmp_path / "new", [row("na-a", noisy(10)), row("win-b", noisy(20)), pair])
    assert compare(base, new).exit_code == 1
    only_na = compare(base, new, filters=["na-*"])
    assert [c.case_id for c in only_na.cases] == ["na-a"] and only_na.exit_code == 0
    assert all(c.case_id != "pair-a--b" for c in compare(base, new).cases)


def test_machine_drift_seen_by_the_calibration_workload_is_divided_out(tmp_path, capsys):
    def rows(scale, slow_case=1.0):
        out = []
        for case, ms in (("a", 10), ("b", 20), ("c", 5)):
            factor = scale * (slow_case if case == "a" else 1.0)
            out.append(row(case, noisy(ms * factor), calib_process_ms=noisy(0.3 * scale)))
        return out

    base = write(tmp_path / "base", rows(1.0))
    drifted = write(tmp_path / "drifted", rows(1.25))  # the whole machine 25 % slower, code unchanged
    result = compare(base, drifted)
    assert result.drift["significant"] and result.drift["applied"] and 1.15 < result.drift["factor"] < 1.35
    assert result.regressions == [] and result.exit_code == 0
    assert compare(base, drifted, normalize="off").exit_code == 1  # raw times: every case "regressed"
    assert compare(base, drifted, metric="memory").drift["applied"] is False
    regressed = write(tmp_path / "regressed", rows(1.25, slow_case=1.5))  # and case a 50 % slower on top
    assert [c.case_id for c in compare(base, regressed).regressions] == ["a"]
    assert cli_main(["compare", str(base), str(drifted)]) == 0
    assert "machine drift: matmul new/base = 1.2" in capsys.readouterr().out
    with pytest.raises(ValueError, match="normalize"):
        compare(base, drifted, normalize="yes")


def test_memory_bound_drift_seen_by_the_copy_calibration_excuses_up_to_its_factor(tmp_path, capsys):
    def rows(copy_scale, slow_case=1.0):
        # matmul unchanged; the DRAM copy (and the memory-bound case "m") slower by copy_scale
        calib = {"calib_process_ms": [0.297, 0.299, 0.3, 0.301, 0.303]}  # the matmul did not move
        out = [row("c", noisy(10), calib_bw_process_ms=noisy(2.0 * copy_scale), **calib)]
        out.append(
            row("m", noisy(10 * copy_scale * slow_case), calib_bw_process_ms=noisy(2.0 * copy_scale), **calib)
        )
        return out

    base = write(tmp_path / "base", rows(1.0))
    slower = write(tmp_path / "slower", rows(1.3))
    result = compare(base, slower)
    assert result.drift["memory"]["significant"] and not result.drift["p_value"] <= 0.05
    assert result.drift["compute"]["factor"] == result.drift["factor"]
    assert result.drift["low"] == 1.0 and result.drift["high"] == pytest.approx(1.3, rel=0.05)
    assert result.exit_code == 0  # the copy slowed as much: not a regression
    assert compare(base, slower, normalize="off").exit_code == 1
    # a regression beyond what the machine explains is still one
    regressed = write(tmp_path / "regressed", rows(1.3, slow_case=1.3))
    assert [c.case_id for c in compare(base, regressed).regressions] == ["m"]
    # faster memory does not excuse a compute case, nor make it an improvement beyond its own change
    faster = write(tmp_path / "faster", rows(0.7))
    verdicts = {c.case_id: c.verdict for c in compare(base, faster).cases}
    assert verdicts == {"c": "unchanged", "m": "unchanged"}
    assert cli_main(["compare", str(base), str(slower)]) == 0
    assert "DRAM copy new/base = 1." in capsys.readouterr().out
    judged = compare(base, regressed)
    (m,) = [c for c in judged.cases if c.case_id == "m"]
    assert m.machine_factor == pytest.approx(judged.drift["high"]) and m.ratio == pytest.approx(1.3, rel=0.05)


def test_a_busy_spell_in_one_case_s_own_processes_excuses_up_to_its_calibration(tmp_path, capsys):
    def rows(a_ms, a_calib):
        out = [row("a", noisy(a_ms, cv=0.01), calib_process_ms=noisy(0.3 * a_calib, cv=0.005))]
        for case in "bcdefg":  # the rest of the sweep ran on a calm machine: the sweep-wide reading stays put
            out.append(row(case, noisy(10, cv=0.01), calib_process_ms=noisy(0.3, cv=0.005)))
        return out

    base = write(tmp_path / "base", rows(10, 1.0))
    busy = write(tmp_path / "busy", rows(12, 1.2))  # a's processes 20 % slower, and so were their matmuls
    result = compare(base, busy)
    assert result.drift is not None and not result.drift["significant"]
    (a,) = [c for c in result.cases if c.case_id == "a"]
    assert a.verdict == "unchanged" and a.machine_factor == pytest.approx(1.2, rel=0.03)
    assert "its own processes' calibrations read new/base 1." in a.test
    assert result.exit_code == 0
    assert compare(base, busy, normalize="off").exit_code == 1
    # beyond what its calibrations explain, or with calm calibrations, it is a regression
    worse = write(tmp_path / "worse", rows(15, 1.2))
    (a,) = compare(base, worse).regressions
    assert a.case_id == "a" and a.ratio == pytest.approx(1.25, rel=0.03)
    calm = write(tmp_path / "calm", rows(12, 1.0))
    assert [c.case_id for c in compare(base, calm).regressions] == ["a"]
    assert cli_main(["compare", str(base), str(busy)]) == 0
    assert "per case, the calibrations read in its own processes" in capsys.readouterr().out


SENTINEL = "matmul 256x256 float32, torch 2.x"


def timed(rel, speed, **extra):
    """A row timed with the sentinel: each process's relative latency and its sentinel's ms."""
    return {
        "latency_rel_process": rel,
        "latency_rel": float(np.median(rel)),
        "sentinel_process_ms": speed,
        "sentinel": SENTINEL,
        **extra,
    }


def test_cases_timed_with_the_sentinel_are_judged_relative_to_it(tmp_path, capsys):
    def case(rel_centre, speeds, **extra):
        rel = noisy(rel_centre, cv=0.01)
        return row("a", [r * s for r, s in zip(rel, speeds)], **timed(rel, speeds), **extra)

    def ab(rel_centre, speeds, side):  # one side of a natbench ab: its processes alternated with the other's
        return case(rel_centre, speeds, ab_side=side, ab_interleaved_with=["/other/side"])

    calm, mixed = [0.33] * 5, [0.33, 0.40, 0.33, 0.41, 0.40]  # processes in the machine's slow state: ~22 %
    base = write(tmp_path / "base", [ab(10, calm, "base")])
    # raw times scattered by the slow state, relative ones not: the same code is unchanged
    same = write(tmp_path / "same", [ab(10, mixed, "new")])
    (a,) = compare(base, same).cases
    assert a.verdict == "unchanged" and a.ratio == pytest.approx(1.0, abs=0.03)
    assert a.machine_factor == pytest.approx(1.21, rel=0.04) and "relative to the sentinel" in a.test
    # base and new at base's sentinel speed (as the ratio); the raw medians are in the line
    assert a.base == pytest.approx(3.3, rel=0.03) and a.new == pytest.approx(3.3, rel=0.04)
    assert "raw: 3.29" in a.test and "ratio 1.1" in a.test
    assert compare(base, same, normalize="off").cases[0].ratio > 1.15  # raw: 21 % "slower"
    # 10 % more work in calm processes against a baseline the slow state met: raw times read it faster;
    # relative to the sentinel it is the regression it is
    busy_base = write(tmp_path / "busy_base", [ab(10, mixed, "base")])
    slow = write(tmp_path / "slow", [ab(11, calm, "new")])
    (a,) = compare(busy_base, slow).regressions
    assert a.ratio == pytest.approx(1.1, rel=0.03) and a.p_value < 0.01
    assert compare(busy_base, slow, normalize="off").cases[0].ratio < 0.95
    assert cli_main(["compare", str(busy_base), str(slow)]) == 1
    out = capsys.readouterr().out
    assert "raw: " in out and "1 of 1 case(s) judged on their processes' times relative" in out
    # rows of separate runs are judged the same way
    runs = write(tmp_path / "runs", [case(10, mixed)]), write(tmp_path / "runs_slow", [case(11, calm)])
    (a,) = compare(*runs).regressions
    assert "relative to the sentinel" in a.test
    # another sentinel (torch changed), or --normalize calibrations: raw times as before
    other = write(
        tmp_path / "other", [{**ab(10, mixed, "new"), "sentinel": "matmul 256x256 float32, torch 3"}]
    )
    (a,) = compare(base, other).cases
    assert "sentinel" not in a.test and a.ratio > 1.15
    (a,) = compare(base, same, normalize="calibrations").cases
    assert "sentinel" not in a.test
    # several baselines pool their relative times; one from another sentinel drops them for all
    (a,) = compare([base, same], slow).regressions
    assert a.base_runs == 2 and "relative to the sentinel" in a.test
    assert "sentinel" not in compare([base, other], slow).cases[0].test


def test_a_change_must_clear_the_scatter_of_the_comparison_s_cases(tmp_path, capsys):
    from scipy.stats import norm

    rng = np.random.default_rng(7)
    n = 40
    # every case's five processes share their run's offset (as one sweep's do): the test over processes does
    # not see it, the scatter of the cases' changes does
    spread = 0.04 * norm.ppf((np.arange(n) + 0.5) / n)

    def sweep(offsets, slower=(), factor=1.4):
        return [
            row(
                f"c{i:02d}",
                list(10 * (factor if i in slower else 1) * np.exp(o + 0.03 * rng.standard_normal(5))),
            )
            for i, o in enumerate(offsets)
        ]

    base = write(tmp_path / "base", sweep(np.zeros(n)))
    same = write(tmp_path / "same", sweep(rng.permutation(spread)))
    aa = compare(base, same)
    assert aa.scatter is not None and aa.scatter["cases"] == n and aa.scatter["tau"] > 0.02
    assert aa.exit_code == 0 and any("within the runs' scatter" in c.test for c in aa.cases)
    assert 0.05 < aa.scatter["detectable"]["quartile"] <= aa.scatter["detectable"]["median"]
    # --per-case: each case on its own test, as asv's compare: the runs' offsets are flagged
    per_case = compare(base, same, per_case=True)
    assert per_case.exit_code == 1 and not per_case.scatter["applied"]
    # ten cases cannot show the scatter: the bar then counts the cases only (tau 0), which a run's offsets of
    # 4 % SD do not clear, though each case's own test flags some of them
    ten = compare(base, same, filters=["c0*"])
    assert ten.scatter["applied"] and ten.scatter["tau"] == 0 and ten.scatter["cases"] == 10
    assert "the bar counts the cases" in ten.scatter["why"] and ten.exit_code == 0
    assert compare(base, same, filters=["c0*"], per_case=True).exit_code == 1
    # a case 2x slower clears it; so does a slowdown of every case beyond the scatter (the bar is about no
    # change, and the scatter is measured about the cases' median change)
    one = write(tmp_path / "one", sweep(rng.permutation(spread), slower={3}, factor=2.0))
    assert [c.case_id for c in compare(base, one).regressions] == ["c03"]
    assert "c03" in {c.case_id for c in compare(base, one, filters=["c0*"]).regressions}
    every = write(tmp_path / "every", sweep(rng.permutation(spread), slower=set(range(n)), factor=2.0))
    assert len(compare(base, every).regressions) == n
    # half of them 20 % slower (a kernel they share) is a change, not the runs' scatter: no bar hides it
    half = write(tmp_path / "half", sweep(rng.permutation(spread), slower=set(range(0, n, 2)), factor=1.2))
    got = compare(base, half)
    assert got.scatter["tau"] == 0 and "changed the same way" in got.scatter["why"]
    slowed = {f"c{i:02d}" for i in range(0, n, 2)}
    flagged = {c.case_id for c in got.regressions}
    assert flagged <= slowed and len(flagged) >= 0.9 * len(slowed)  # a few met a run offset of -5 % or more
    assert cli_main(["compare", str(base), str(same)]) == 0
    out = capsys.readouterr().out
    assert (
        "between runs: the 40 cases' log changes scatter" in out
        and "a change of one case shows beyond" in out
    )
    assert cli_main(["compare", str(base), str(same), "--per-case"]) == 1
    assert cli_main(["compare", str(base), str(same), "--filter", "c0*"]) == 0
    out = capsys.readouterr().out
    assert "fewer than 20, cannot show how the runs scatter" in out and "alpha / (2 x 10 cases)" in out


def test_a_case_whose_baseline_runs_scatter_carries_its_own_between_run_noise(tmp_path):
    from natbench.compare import case_offsets

    rng = np.random.default_rng(11)
    n = 40

    def sweep(shift=None):  # every case within 2 % of its centre from run to run, but those named in shift
        shift = shift or {}
        return [
            row(
                f"c{i:02d}",
                list(10 * np.exp(shift.get(i, 0.02 * rng.standard_normal()) + 0.03 * rng.standard_normal(5))),
            )
            for i in range(n)
        ]

    # c05 sat 15 % apart from one baseline run to the next; c09 never moved
    runs = [write(tmp_path / f"b{k}", sweep({5: o, 9: 0.0})) for k, o in enumerate((-0.15, 0.15, 0.0))]
    new = write(tmp_path / "new", sweep({5: 0.2, 9: np.log(1.4)}))
    alone = {c.case_id: c for c in compare(runs[-1], new).cases}
    assert alone["c05"].verdict == "regression" and alone["c05"].run_var is None
    got = {c.case_id: c for c in compare(runs, new).cases}
    assert got["c05"].base_runs == 3 and got["c05"].run_df == 2 and got["c05"].run_var > 0.015
    assert got["c05"].verdict == "unchanged" and "its 3 baseline runs' and the runs'" in got["c05"].test
    assert got["c09"].verdict == "regression" and got["c09"].run_var < 0.002  # a stable case still shows
    # the offsets: the variance of the runs' mean logs less their processes' share of it
    base = {"base_run_values": {"latency_process_ms": [[9.0, 11.0], [19.0, 21.0]]}}
    means = [np.mean(np.log([9.0, 11.0])), np.mean(np.log([19.0, 21.0]))]
    noise = np.mean([np.var(np.log(v), ddof=1) / 2 for v in ([9.0, 11.0], [19.0, 21.0])])
    assert case_offsets(base, "latency_process_ms") == {
        "var": pytest.approx(np.var(means, ddof=1) - noise),
        "df": 1,
    }
    assert (
        case_offsets({"base_run_values": {"latency_process_ms": [[10.0, 11.0]]}}, "latency_process_ms")
        is None
    )


def test_a_shared_change_with_the_machine_s_calibrations_moved_is_the_machine_s(tmp_path):
    rng = np.random.default_rng(5)
    n = 40

    def sweep(
        factor, calib
    ):  # half the cases slower by `factor` (time and memory), the matmul reading `calib`
        rows = []
        for i in range(n):
            f = factor if i % 2 else 1.0
            ms = 10 * f * np.exp(0.03 * rng.standard_normal() + 0.02 * rng.standard_normal(5))
            mem = [1e6 * f] * 5
            calib_ms = calib * (1 + 0.01 * rng.standard_normal(5))
            rows.append(
                row(
                    f"c{i:02d}",
                    list(ms),
                    calib_process_ms=list(calib_ms),
                    peak_mem_bytes=mem[0],
                    peak_mem_process_bytes=mem,
                )
            )
        return rows

    base = write(tmp_path / "base", sweep(1.0, 0.33))
    quiet = write(tmp_path / "quiet", sweep(1.12, 0.33))
    slow = write(tmp_path / "slow", sweep(1.12, 0.33 * 1.15))
    # raw times (no calibration range): half the cases 12 % slower is a shared change while the machine held still
    got = compare(base, quiet, normalize="off")
    assert got.scatter["tau"] == 0 and "a shared change" in got.scatter["why"]
    # ... and the machine's when its matmul read 15 % slower as well: the runs' scatter stays in the bar
    got = compare(base, slow, normalize="off")
    assert got.drift["significant"] and got.scatter["tau"] > 0.02
    assert "and the machine's calibrations moved by x1.1" in got.scatter["why"]
    # the machine's speed moves no bytes: a shared memory change stays one
    got = compare(base, slow, metric="memory")
    assert (
        got.scatter["tau"] == 0 and "a shared change" in got.scatter["why"] and len(got.regressions) == n // 2
    )


def test_no_calibration_values_no_drift_correction(tmp_path):
    base = write(tmp_path / "base", [row("a", noisy(10))])
    new = write(tmp_path / "new", [row("a", noisy(10))])
    assert compare(base, new).drift is None


def test_several_baselines_pool_their_runs_and_a_change_must_beat_each(tmp_path, capsys):
    def exact(ms):
        return [ms * f for f in (0.99, 0.995, 1.0, 1.005, 1.01)]

    monday = write(tmp_path / "mon", [row("a", exact(10.0)), row("b", exact(10.0))])
    tuesday = write(tmp_path / "tue", [row("a", exact(11.5)), row("b", exact(10.0))])
    other = write(tmp_path / "other", [row("a", exact(5.0), device_name="CPU Y"), row("b", exact(10.0))])
    today = write(tmp_path / "today", [row("a", exact(11.2)), row("b", exact(13.0))])
    # against Monday alone, a is 12 % slower; Tuesday's run was slower still: between-run noise, not a regression
    assert [c.case_id for c in compare(monday, today).regressions] == ["a", "b"]
    pooled = compare([monday, tuesday], today)
    assert [c.case_id for c in pooled.regressions] == ["b"]
    a = next(c for c in pooled.cases if c.case_id == "a")
    assert a.base_runs == 2 and a.base_n == 10 and a.base == pytest.approx(10.75) and a.verdict == "unchanged"
    assert "pooled over 2 baseline runs" in a.test
    # a baseline run from another machine is left out of the pool, not averaged in
    mixed = compare([other, monday], today)
    a = next(c for c in mixed.cases if c.case_id == "a")
    assert a.base_runs == 1 and a.base == pytest.approx(10.0)
    assert cli_main(["compare", str(monday), str(tuesday), str(today)]) == 1
    out = capsys.readouterr().out
    assert f"base: {monday}, {tuesday}" in out and "regression" in out
    with pytest.raises(ValueError, match="at least one baseline"):
        compare([], today)


def test_memory_read_two_ways_is_not_compared(tmp_path):
    mib = 2**20
    rss = {"peak_mem_bytes": 120 * mib, "peak_mem_process_bytes": [120 * mib] * 3, "memory_method": "rss"}
    alloc = {
        "peak_mem_bytes": 100 * mib,
        "peak_mem_process_bytes": [100 * mib] * 3,
        "memory_method": "cpu allocated",
    }
    base = write(tmp_path / "base", [row("a", noisy(10), **rss)])
    new = write(tmp_path / "new", [row("a", noisy(10), **alloc)])
    result = compare(base, new, metric="memory")
    assert result.exit_code == 2 and "read differently" in result.not_comparable[0]["reason"]
    assert compare(base, new).exit_code == 0  # latency still compares
    # with several baselines, one read the other way is left out of the pool, whatever the order
    also = write(tmp_path / "also", [row("a", noisy(10), **alloc)])
    grown = {**alloc, "peak_mem_bytes": 130 * mib, "peak_mem_process_bytes": [130 * mib] * 3}
    newer = write(tmp_path / "newer", [row("a", noisy(10), **grown)])
    for bases in ([base, also], [also, base]):
        (case,) = compare(bases, newer, metric="memory").cases
        assert case.verdict == "regression" and case.base_runs == 1 and case.ratio == pytest.approx(1.3)


def test_short_runs_with_a_drift_floor_must_change_beyond_it(tmp_path):
    # two `natbench run`s on a machine whose runs drift by 4 %: a change must exceed 1.96 x hypot(4 %, 4 %),
    # 11.7 %; 10 % is not a regression there, 20 % is, and memory (read the same in every run) keeps 5 %
    base = write(tmp_path / "base", [row("a", [10.0, 10.1, 9.9, 10.2, 9.8], latency_drift_cv=0.04)])
    ten = write(tmp_path / "ten", [row("a", [11.0, 11.1, 10.9, 11.2, 10.8], latency_drift_cv=0.04)])
    twenty = write(tmp_path / "twenty", [row("a", [12.0, 12.1, 11.9, 12.2, 11.8], latency_drift_cv=0.04)])
    (case,) = compare(base, ten).cases
    assert case.verdict == "unchanged" and "change must exceed 11.7%" in case.test
    assert compare(base, twenty).cases[0].verdict == "regression"
    mem = {
        "peak_mem_process_bytes": [100, 100, 100, 100, 100],
        "peak_mem_bytes": 100,
        "latency_drift_cv": 0.04,
    }
    more = {**mem, "peak_mem_process_bytes": [110] * 5, "peak_mem_bytes": 110}
    m_base = write(tmp_path / "m_base", [row("a", [10.0] * 5, **mem)])
    m_new = write(tmp_path / "m_new", [row("a", [10.0] * 5, **more)])
    assert compare(m_base, m_new, metric="memory").cases[0].verdict == "regression"
    plain = write(tmp_path / "plain", [row("a", [11.0, 11.1, 10.9, 11.2, 10.8])])
    assert compare(write(tmp_path / "b2", [row("a", [10.0, 10.1, 9.9, 10.2, 9.8])]), plain).cases[
        0
    ].verdict == ("regression")


def test_relative_times_pool_and_follow_the_metric(tmp_path):
    def run(rel, speeds, **extra):  # one side of a natbench ab, with a batch for throughput
        ms = [r * s for r, s in zip(rel, speeds)]
        return row(
            "a",
            ms,
            batch=2,
            throughput=2e3 / float(np.median(ms)),
            **timed(rel, speeds),
            **extra,
            ab_interleaved_with=["/other"],
        )

    calm = [0.33] * 5
    runs = [write(tmp_path / f"b{i}", [run(noisy(c, cv=0.005), calm)]) for i, c in enumerate((10, 10, 12))]
    # the pooled baseline's relative point is the median of its runs' (10), not the last run's (12)
    near = write(tmp_path / "near", [run(noisy(10.2, cv=0.005), calm)])
    (a,) = compare(runs, near).cases
    assert a.ratio == pytest.approx(1.02, abs=0.01) and a.verdict == "unchanged"
    # 20 % slower: a regression in latency and in throughput, against pooled baselines too
    slow = write(tmp_path / "slow", [run(noisy(12 * 1.2, cv=0.005), calm)])
    for metric in ("latency", "throughput"):
        (got,) = compare(runs, slow, metric=metric).cases
        assert got.verdict == "regression", (metric, got.test)
    # a baseline run without the sentinel: no relative pooling, and the case is judged on raw times
    plain = write(tmp_path / "plain", [row("a", [3.3] * 5, batch=2, ab_interleaved_with=["/other"])])
    assert "relative to the sentinel" not in compare([plain, runs[0]], slow).cases[0].test


def test_a_row_made_of_processes_with_and_without_the_sentinel_carries_none():
    from natbench.measure.repeat import combine

    def process(ms, sentinel):
        out = {"status": "ok", "latency_ms": ms, "latency_samples_ms": [ms], "peak_mem_bytes": 1}
        if sentinel:
            out.update(sentinel="matmul", sentinel_ms=0.33, latency_rel=ms / 0.33)
        return out

    mixed = combine([process(3.3, False), process(3.4, False), process(3.3, True)], None, None)
    assert mixed["sentinel"] is None and mixed["latency_rel_process"] is None and mixed["sentinel_ms"] is None
    full = combine([process(3.3, True), process(3.4, True)], None, None)
    assert full["sentinel"] == "matmul" and len(full["latency_rel_process"]) == 2
    assert full["latency_rel"] == pytest.approx(10.15, rel=0.01)
