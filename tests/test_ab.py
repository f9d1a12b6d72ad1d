"""natbench ab: two import paths, processes interleaved in alternating rounds, then compare."""

from __future__ import annotations

import textwrap

import pytest
import torch

from natbench import results
from natbench.cli import main as cli_main
from natbench.measure import ab

SPEC = {"target": "abcase:work", "device": "cpu", "batch": 1}


def _module(directory, sleep_s: float):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "abcase.py").write_text(
        textwrap.dedent(
            f"""
            import time

            def work(spec, device, dtype):
                def call():
                    time.sleep({sleep_s})
                return call
            """
        )
    )
    return directory


def test_paths_must_be_directories_that_do_not_shadow_what_the_forkserver_preloaded(tmp_path):
    good = _module(tmp_path / "good", 0)
    with pytest.raises(ValueError, match="not a directory"):
        ab.check_paths({"base": [str(good)], "new": [str(tmp_path / "missing")]})
    with pytest.raises(ValueError, match="--base needs at least one directory"):
        ab.check_paths({"base": [], "new": [str(good)]})
    (tmp_path / "shadow" / "torch").mkdir(parents=True)
    with pytest.raises(ValueError, match="holds torch, which every case process has already imported"):
        ab.check_paths({"base": [str(good)], "new": [str(tmp_path / "shadow")]})
    (tmp_path / "np").mkdir()
    (tmp_path / "np" / "numpy").mkdir()  # preloaded too (torch imports it), so it cannot switch either
    with pytest.raises(ValueError, match="holds numpy"):
        ab.check_paths({"base": [str(good)], "new": [str(tmp_path / "np")]})
    with pytest.raises(ValueError, match="empty directory"):
        ab.check_paths({"base": [str(good), ""], "new": [str(good)]})
    paths = ab.check_paths({"base": [str(good)], "new": [str(good)]})  # an A/A is allowed
    assert paths["base"] == paths["new"] == [str(good.resolve())]


def _fake(monkeypatch, calib):
    """run_process stand-in: records the side of each call; calib(side, n) gives that process's calib_ms."""
    calls = []

    def run_process(spec, timeout, timing, memory_limit, log_path, threads, path=None):
        side = "base" if path == ["/b"] else "new"
        n = sum(s == side for s in calls)
        calls.append(side)
        c = calib(side, n)
        if c is None:
            return {**spec, "status": "error", "error": "boom", "case_id": "c"}
        if c == "unsupported":
            return {**spec, "status": "unsupported", "error": "no kernel for this", "case_id": "c"}
        return {**spec, "case_id": "c", "status": "ok", "latency_ms": 1.0 + n, "calib_ms": c}

    monkeypatch.setattr(ab, "run_process", run_process)
    monkeypatch.setattr(ab, "check_paths", lambda paths: paths)
    return calls


def test_rounds_alternate_and_slowed_processes_bring_whole_extra_rounds(monkeypatch):
    calls = _fake(monkeypatch, lambda side, n: 0.33)
    rows = ab.run_ab(SPEC, {"base": ["/b"], "new": ["/n"]}, repeats=3)
    assert calls == ["base", "new", "new", "base", "base", "new"]
    assert rows["base"]["ab_side"] == "base" and rows["new"]["ab_interleaved_with"] == ["/b"]
    assert rows["base"]["repeats"] == 3 and rows["base"]["processes_run"] == 3

    # base's first two processes ran on a slowed machine: two more rounds, both sides, and each row keeps
    # its 3 least contended processes
    calls = _fake(monkeypatch, lambda side, n: 0.5 if side == "base" and n < 2 else 0.33)
    rows = ab.run_ab(SPEC, {"base": ["/b"], "new": ["/n"]}, repeats=3)
    assert calls == ["base", "new", "new", "base", "base", "new", "new", "base", "base", "new"]
    assert rows["base"]["processes_run"] == 5 and rows["base"]["latency_process_ms"] == [3.0, 4.0, 5.0]
    assert rows["new"]["processes_run"] == 5 and rows["new"]["repeats"] == 3

    # extra rounds are capped
    calls = _fake(monkeypatch, lambda side, n: 0.5 if side == "base" and n % 2 else 0.33)
    ab.run_ab(SPEC, {"base": ["/b"], "new": ["/n"]}, repeats=3, extra_rounds=1)
    assert len(calls) == 8


def test_a_failed_process_ends_both_sides_and_says_so(monkeypatch):
    calls = _fake(monkeypatch, lambda side, n: None if side == "base" else 0.33)
    rows = ab.run_ab(SPEC, {"base": ["/b"], "new": ["/n"]}, repeats=3)
    assert calls == ["base"] and rows["base"]["status"] == "error" and "boom" in rows["base"]["error"]
    assert rows["new"]["status"] == "error"
    assert "the base side's first process failed (error)" in rows["new"]["error"]
    # a failure in round 2 keeps what ran; the row of its side fails
    calls = _fake(monkeypatch, lambda side, n: None if (side, n) == ("new", 1) else 0.33)
    rows = ab.run_ab(SPEC, {"base": ["/b"], "new": ["/n"]}, repeats=3)
    assert calls == ["base", "new", "new"] and rows["new"]["status"] == "error"


def test_one_side_unsupported_still_runs_the_other_side(monkeypatch):
    # the versions may differ in what they support: new lost the case that base runs
    calls = _fake(monkeypatch, lambda side, n: "unsupported" if side == "new" else 0.33)
    rows = ab.run_ab(SPEC, {"base": ["/b"], "new": ["/n"]}, repeats=3)
    assert calls == ["base", "new"] and rows["base"]["status"] == "ok"
    assert rows["new"]["status"] == "unsupported"
    calls = _fake(monkeypatch, lambda side, n: "unsupported" if side == "base" else 0.33)
    rows = ab.run_ab(SPEC, {"base": ["/b"], "new": ["/n"]}, repeats=3)
    assert calls == ["base", "new"] and rows["new"]["status"] == "ok"
    assert rows["base"]["status"] == "unsupported"


def test_ab_measures_each_side_from_its_own_path_and_exits_as_compare(tmp_path, capsys):
    fast, slow = _module(tmp_path / "fast", 0), _module(tmp_path / "slow", 0.004)
    out = tmp_path / "out"
    argv = ["ab", "abcase:work", "--threads", "1", "--repeats", "3", "--min-run-time", "0.02"]
    assert cli_main([*argv, "--base", str(fast), "--new", str(slow), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "A/B of abcase:work, 3 processes a side, interleaved" in printed and "1 regression(s)" in printed
    assert "relative to the sentinel" in printed and "sentinel new/base x" in printed
    base, new = results.load(out / "base"), results.load(out / "new")
    assert list(base["ab_side"]) == ["base"] and list(new["ab_path"]) == [[str(slow.resolve())]]
    assert new["latency_ms"].iloc[0] > 4 > 10 * base["latency_ms"].iloc[0]
    assert results.load(out / "new")["env"].iloc[0]["git_sha"]  # provenance, as sweeps write it
    assert cli_main([*argv, "--base", str(fast), "--new", str(tmp_path / "nowhere")]) == 2
    assert "not a directory" in capsys.readouterr().err
    assert cli_main([*argv, "--base", str(fast), "--new", str(slow), "--alpha", "2"]) == 2
    assert "--alpha in (0, 1)" in capsys.readouterr().err
    few = ["ab", "abcase:work", "--repeats", "2", "--base", str(fast), "--new", str(slow)]
    assert cli_main(few) == 2 and "--repeats must be >= 3 for an A/B" in capsys.readouterr().err
    # a case that cannot run here: nothing comparable (2), with the reason, never a silent 0
    cuda = ["ab", "na", "--device", "cuda", "--resolution", "14", "--kernel-size", "3", "--repeats", "3"]
    if not torch.cuda.is_available():
        assert cli_main([*cuda, "--base", str(fast), "--new", str(slow)]) == 2
        assert "unsupported" in capsys.readouterr().err


def test_the_two_sides_sentinels_are_reported_and_a_difference_explained():
    from natbench.measure.ab import sentinels

    calm = {"sentinel_process_ms": [0.33, 0.34, 0.33, 0.40, 0.33]}
    same = sentinels(calm, {"sentinel_process_ms": [0.33, 0.40, 0.34, 0.33, 0.34]}, 0.05)
    assert same.startswith("sentinel new/base x1.0") and "differ" not in same
    assert sentinels(calm, {}, 0.05) is None  # rows without a sentinel: nothing to say
    moved = sentinels(calm, {"sentinel_process_ms": [0.45, 0.46, 0.44, 0.47, 0.45]}, 0.05)
    assert "new/base x1.3" in moved and "--normalize calibrations judges raw" in moved
