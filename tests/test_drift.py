"""The machine's drift floor (natbench.measure.drift, `natbench noise`) and the intervals it widens."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
from dataclasses import replace

import pytest

from natbench.cli import main as cli_main
from natbench.measure import drift, repeat
from natbench.measure.drift import Z95, DriftProfile, probe_drift, standard_error, widen


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NATBENCH_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _profile(floor=0.05, span_s=120.0) -> DriftProfile:
    return DriftProfile(floor, span_s, 8, 5, None, "cpu:test:2t", "host", "2026-12-06T00:00:00+00:00")


def _row(med=10.0, low=9.5, high=10.5, span=2.0):
    return {
        "status": "ok",
        "repeats": 5,
        "latency_ms": med,
        "latency_ci_low_ms": low,
        "latency_ci_high_ms": high,
        "latency_span_s": span,
    }


def test_standard_error_is_the_mean_half_width_of_a_95_interval():
    se = 0.02
    assert standard_error(1.0, math.exp(-Z95 * se), math.exp(Z95 * se)) == pytest.approx(se)
    assert standard_error(1.0, math.exp(-Z95 * se), math.exp(Z95 * 3 * se)) == pytest.approx(2 * se)
    assert standard_error(1.0, 1.0, 1.0) == 0.0


def test_drift_is_the_spread_between_rounds_beyond_each_rounds_own_error():
    medians = [10.0, 11.0, 9.0, 10.5, 9.5]
    d = probe_drift(medians, [0.01] * 5)
    sd = statistics.stdev(math.log(m) for m in medians)
    assert d.between_sd == pytest.approx(sd)
    assert d.drift_sd == pytest.approx(math.sqrt(sd**2 - 0.01**2))
    # a round slowed by a burst counts: a later run may meet one too
    assert probe_drift([10.0, 11.0, 9.0, 10.5, 15.0], [0.01] * 5).drift_sd > 2 * d.drift_sd
    # rounds that differ no more than their own errors allow: no drift
    assert probe_drift([10.0, 10.1], [0.05, 0.05]).drift_sd == 0.0
    with pytest.raises(ValueError, match=">= 2 rounds"):
        probe_drift([10.0], [0.01])


def test_widen_adds_the_floor_in_quadrature_to_a_short_runs_interval():
    row = widen(_row(), _profile(0.05))
    down = math.sqrt(math.log(10 / 9.5) ** 2 + (Z95 * 0.05) ** 2)
    assert row["latency_ci_low_ms"] == pytest.approx(10 * math.exp(-down))
    up = math.sqrt(math.log(10.5 / 10) ** 2 + (Z95 * 0.05) ** 2)
    assert row["latency_ci_high_ms"] == pytest.approx(10 * math.exp(up))
    assert row["latency_process_ci_low_ms"] == 9.5 and row["latency_process_ci_high_ms"] == 10.5
    assert row["latency_drift_cv"] == 0.05 and "machine drift 5.0%" in row["latency_ci_method"]


def _probed(na=0.0, window=0.053, full=0.0) -> DriftProfile:
    """A profile as one spell measured it: the window probe drifted, the others did not (median 0)."""
    probes = {
        name: drift.ProbeDrift([1.0, 1.0], [0.0, 0.0], sd, sd)
        for name, sd in (("na-64", na), ("window-64", window), ("full-32", full))
    }
    return replace(_profile(0.0), probes=probes)


def test_each_op_takes_its_own_probes_drift_and_other_ops_the_largest():
    profile = _probed()
    assert profile.floor_for("window") == (0.053, "its op's probe, window, or the probes' median")
    assert profile.floor_for("na")[0] == 0.0
    assert replace(profile, floor=0.02).floor_for("na")[0] == 0.02  # never below the machine's median
    assert profile.floor_for("nat_tiny") == (0.053, "the largest probe, window-64")
    assert _profile(0.04).floor_for("window") == (0.04, "the profile's floor")  # a profile without probes


def test_a_profile_pools_its_drift_with_the_earlier_measurements_of_the_machine():
    # one spell drifted 8.4 %, the next 3.0 %: the floor is their pooled SD, not the newest spell's alone
    first = replace(_probed(window=0.084), floor=0.084)
    second = replace(_probed(window=0.030), floor=0.030, earlier=[first.summary()])
    pooled = math.sqrt((0.084**2 + 0.030**2) / 2)
    assert second.floor_for("window") == (
        pytest.approx(pooled),
        "its op's probe, window, or the probes' median, pooled over 2 measurements",
    )
    assert second.floor_for("nat_tiny")[0] == pytest.approx(pooled)  # the largest pooled probe
    assert second.pooled_floor == pytest.approx(pooled)
    row = widen({**_row(), "target": "window"}, second)
    assert row["latency_drift_cv"] == pytest.approx(pooled) and "pooled over 2" in row["latency_ci_method"]
    # a probe the earlier measurement did not run pools over the measurements that did
    assert (
        replace(second, earlier=[drift.EarlierDrift("t", 120.0, 0.05, {})]).probe_drift("window-64") == 0.03
    )


def test_build_profile_keeps_this_machines_earlier_measurements_only(monkeypatch):
    monkeypatch.setattr(drift, "this_machine", lambda threads, env=None: ("cpu:test:2t", "host"))
    profile = None
    for i in range(drift.MAX_EARLIER + 3):
        profile = drift.build_profile(
            {"p": probe_drift([1.0, 1.0 + i / 100], [0.0, 0.0])}, 60.0, 2, 5, 2, profile
        )
    assert len(profile.earlier) == drift.MAX_EARLIER  # the newest measurements, newest first
    assert profile.earlier[0].probes["p"] > profile.earlier[-1].probes["p"]
    assert DriftProfile.from_dict(json.loads(json.dumps(profile.to_dict()))) == profile
    other = replace(profile, host="another")
    assert drift.build_profile({"p": probe_drift([1.0, 1.1], [0.0, 0.0])}, 60.0, 2, 5, 2, other).earlier == []


def test_widen_uses_the_rows_op_not_the_profiles_median():
    # The profile's median floor is 0: one floor for every op left window rows at 30-53 % coverage.
    window = widen({**_row(), "target": "window"}, _probed())
    assert window["latency_drift_cv"] == 0.053 and "its op's probe, window" in window["latency_ci_method"]
    assert window["latency_ci_high_ms"] / 10 > math.exp(Z95 * 0.053)
    na = widen({**_row(), "target": "na"}, _probed())
    assert na["latency_drift_cv"] == 0.0 and na["latency_ci_high_ms"] == 10.5
    model = widen(_row(), _probed(), target="nat_tiny")
    assert model["latency_drift_cv"] == 0.053 and "largest probe" in model["latency_ci_method"]


@pytest.mark.parametrize(
    "row, profile",
    [
        (
            _row(span=300.0),
            _profile(0.05, 120.0),
        ),  # a sweep's processes span the drift: their spread holds it
        (_row(), None),  # never measured
        (_row(), _profile(0.0)),
        ({**_row(), "status": "error"}, _profile()),
    ],
)
def test_widen_leaves_intervals_that_hold_the_drift_or_have_no_floor(row, profile):
    got = widen(dict(row), profile)
    assert got["latency_ci_low_ms"] == row["latency_ci_low_ms"]
    assert got["latency_ci_high_ms"] == row["latency_ci_high_ms"]
    if row["status"] == "ok":
        assert got["latency_drift_cv"] == 0.0 and got["latency_ci_method"] == "bootstrap over processes"


def test_finish_records_the_processes_span_and_widens_by_the_profile():
    procs = [
        {"status": "ok", "latency_ms": ms, "latency_samples_ms": [ms], "duration_s": 1.0, "started_at": t}
        for ms, t in ((10.0, 100.0), (10.2, 101.0), (9.9, 102.0))
    ]
    row = repeat.finish({"target": "na"}, procs, 3, drift=_profile(0.04))
    assert row["latency_span_s"] == 3.0 and "started_at" not in row
    assert row["latency_drift_cv"] == 0.04
    # the case's op picks the probe, also when its processes' rows do not name it
    assert (
        repeat.finish({"target": "window"}, procs, 3, drift=_probed(window=0.07))["latency_drift_cv"] == 0.07
    )
    assert row["latency_ci_high_ms"] / row["latency_ms"] > math.exp(Z95 * 0.04)


def test_profile_round_trip_and_clear_errors(cache, monkeypatch):
    profile = drift.build_profile({"p": probe_drift([1.0, 1.1], [0.01, 0.01])}, 60.0, 2, 5, None)
    path = drift.save(profile)
    assert path.parent == cache / "drift"
    assert drift.load() == profile  # this machine, torch's default threads
    assert drift.load(threads=7) is None  # a profile is per thread count
    monkeypatch.setenv(drift.PROFILE_ENV, "none")
    assert drift.load() is None
    monkeypatch.setenv(drift.PROFILE_ENV, str(cache / "missing.json"))
    with pytest.raises(ValueError, match="natbench noise --output"):
        drift.load()
    assert drift.load(path=path) == profile


@pytest.mark.parametrize(
    "text, says",
    [
        ("[]", "JSON object"),
        ("{not json", "unreadable"),
        ('{"floor": -1}', "floor must be"),
        ('{"floor": true}', "floor must be"),
        ('{"floor": 0.05, "span_s": "120"}', "span_s must be"),
        ('{"floor": 0.05, "span_s": NaN}', "span_s must be"),
    ],
)
def test_a_corrupt_profile_is_one_clear_error(tmp_path, text, says):
    full = {**_profile().to_dict()}
    bad = tmp_path / "bad.json"
    if text.startswith("{") and text != "{not json":
        full.update(json.loads(text))
        text = json.dumps(full)
    bad.write_text(text)
    with pytest.raises(ValueError, match=says):
        drift.load(path=bad)
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps({**_profile().to_dict(), "probes": [1, 2]}))
    with pytest.raises(ValueError, match="probes must map"):
        drift.load(path=probes)
    earlier = tmp_path / "earlier.json"
    earlier.write_text(json.dumps({**_profile().to_dict(), "earlier": [{"floor": "x"}]}))
    with pytest.raises(ValueError, match="earlier must list"):
        drift.load(path=earlier)


def test_measure_spreads_rounds_and_a_failed_probe_is_an_error(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(drift.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(drift.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    medians = iter([10.0, 12.0, 11.0])

    def run_case(spec):
        clock[0] += 1.0
        med = next(medians)
        return {"status": "ok", "latency_ms": med, "latency_ci_low_ms": med, "latency_ci_high_ms": med}

    drifts, spanned = drift.measure(run_case, rounds=3, span=30.0, probes={"p": {"target": "na"}})
    assert spanned == 31.0  # starts at 0, 15, 30; the last round takes 1 s
    assert drifts["p"].medians_ms == [10.0, 12.0, 11.0] and drifts["p"].drift_sd > 0.05
    with pytest.raises(RuntimeError, match="probe p failed: error: boom"):
        drift.measure(lambda s: {"status": "error", "error": "boom"}, 2, 0.0, {"p": {}})
    with pytest.raises(ValueError, match="rounds must be >= 2"):
        drift.measure(run_case, rounds=1)


def test_noise_command_measures_saves_and_shows(tmp_path, monkeypatch, capsys):
    assert cli_main(["noise", "--show"]) == 1  # nothing measured yet
    assert cli_main(["noise", "--repeats", "1"]) == 2
    assert cli_main(["noise", "--threads", "0"]) == 2
    assert cli_main(["noise", "--span", "inf"]) == 2
    assert cli_main(["noise", "--output", str(tmp_path)]) == 2  # a directory: refused before measuring
    assert "is a directory" in capsys.readouterr().err
    monkeypatch.setattr(
        drift,
        "PROBES",
        {
            "tiny": {
                "target": "na",
                "backend": "tiled",
                "resolution": 12,
                "kernel_size": 3,
                "heads": 1,
                "head_dim": 8,
            }
        },
    )
    assert cli_main(["noise", "--rounds", "2", "--span", "0", "--repeats", "2"]) == 0
    out = capsys.readouterr().out
    assert "drift floor" in out and "tiny" in out
    assert cli_main(["noise", "--show"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["rounds"] == 2 and len(shown["probes"]["tiny"]["medians_ms"]) == 2
    assert shown["earlier"] == []
    # a second measurement pools with the first; --fresh forgets it
    assert cli_main(["noise", "--rounds", "2", "--span", "0", "--repeats", "2"]) == 0
    assert "pooled with 1 earlier measurement" in capsys.readouterr().out
    assert cli_main(["noise", "--show"]) == 0
    assert json.loads(capsys.readouterr().out)["earlier"][0]["measured_at"] == shown["measured_at"]
    assert cli_main(["noise", "--rounds", "2", "--span", "0", "--repeats", "2", "--fresh"]) == 0
    assert "pooled" not in capsys.readouterr().out

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(drift, "save", fail)  # minutes of measuring are not lost: the profile is printed
    assert cli_main(["noise", "--rounds", "2", "--span", "0", "--repeats", "2"]) == 1
    got = capsys.readouterr()
    assert json.loads(got.out)["rounds"] == 2 and "could not be saved" in got.err


def test_natbench_run_carries_the_floor_of_the_profile_it_was_given(tmp_path):
    path = drift.save(_profile(0.06, 1e6), tmp_path / "profile.json")
    cmd = [sys.executable, "-m", "natbench", "run", "na", "--backend", "tiled", "--resolution", "12"]
    cmd += [
        "--kernel-size",
        "3",
        "--heads",
        "1",
        "--head-dim",
        "8",
        "--repeats",
        "2",
        "--min-run-time",
        "0.02",
    ]
    env = {**os.environ, drift.PROFILE_ENV: str(path)}
    got = subprocess.run([*cmd, "--json"], capture_output=True, text=True, env=env, timeout=300)
    assert got.returncode == 0, got.stderr
    row = json.loads(got.stdout.strip().splitlines()[-1])
    assert row["latency_drift_cv"] == 0.06 and row["latency_span_s"] > 0
    assert row["latency_ci_high_ms"] / row["latency_ms"] >= math.exp(Z95 * 0.06) - 1e-9
    env.pop(drift.PROFILE_ENV)  # none measured for 1 thread: the run says how to measure one
    got = subprocess.run([*cmd, "--threads", "1"], capture_output=True, text=True, env=env, timeout=300)
    assert got.returncode == 0 and "`natbench noise --threads 1` measures" in got.stderr
    env[drift.PROFILE_ENV] = str(tmp_path / "nope.json")
    got = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert got.returncode == 2 and "natbench noise --output" in got.stderr


def test_natbench_env_says_whether_the_floor_was_measured(capsys):
    assert cli_main(["env"]) == 0
    assert "not measured for" in (out := capsys.readouterr().out) and "for 97 thread(s)" not in out
    # a profile for another thread count is named, with the flag that uses it
    drift.save(drift.build_profile({"p": probe_drift([1.0, 1.1], [0.0, 0.0])}, 60.0, 2, 5, 97))
    assert cli_main(["env"]) == 0
    assert "for 97 thread(s)" in (out := capsys.readouterr().out) and "run --threads 97` takes it" in out
    # the count comes from the machine key, also for a profile measured at torch's count of another day
    other = drift.build_profile({"p": probe_drift([1.0, 1.1], [0.0, 0.0])}, 60.0, 2, 5, 97)
    drift.save(replace(other, machine=other.machine.replace(":97t", ":95t"), threads=None))
    assert cli_main(["env"]) == 0
    assert "for 95 thread(s)" in (out := capsys.readouterr().out) and out.index("95 thread") < out.index(
        "97 thread"
    )
    drift.save(drift.build_profile({"p": probe_drift([1.0, 1.1], [0.0, 0.0])}, 60.0, 2, 5, None))
    assert cli_main(["env"]) == 0
    assert "drift floor" in (out := capsys.readouterr().out) and "over 60 s, measured 20" in out
