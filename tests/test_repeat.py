"""Repeats across fresh processes and interleaved pairs (natbench.measure.repeat), and presets declaring them."""

from __future__ import annotations

import textwrap

import pytest

from natbench import results
from natbench.measure import interleave, repeat
from natbench.measure.repeat import PairSpec, combine, measure_pair, run_repeated
from natbench.measure.spec import CaseSpec
from natbench.sweep.preset import expand, load_preset

FAST = {"min_run_time": 0.01, "warmup": 0.0, "min_samples": 2}


@pytest.fixture
def cases(tmp_path, monkeypatch):
    (tmp_path / "pair_cases.py").write_text(
        textwrap.dedent("""
        import torch

        def small(spec, device, dtype):
            a = torch.randn(16, 16)
            def call_a():
                return a @ a
            return call_a

        def large(spec, device, dtype):
            a = torch.randn(64, 64)
            def call_b():
                return a @ a
            return call_b

        def fails(spec, device, dtype):
            raise RuntimeError("broken case")

        def slow(spec, device, dtype):
            import time
            def call_c():
                time.sleep(0.025)  # longer than a switch's untimed call is worth
            return call_c

        def big_temporary(spec, device, dtype):
            def call():
                return torch.empty(16 * 2**20).fill_(1.0).sum()  # a 64 MiB temporary per call
            return call
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def _proc(ms, peak, **extra):
    return {
        "status": "ok",
        "latency_ms": ms,
        "latency_samples_ms": [ms, ms * 1.1],
        "peak_mem_bytes": peak,
        "duration_s": 1.0,
        "batch": 1,
        **extra,
    }


def test_combine_keeps_process_medians_and_their_interval():
    row = combine([_proc(4.0, 100), _proc(6.0, 120), _proc(5.0, 110)], 0.5, 0.7)
    assert row["repeats"] == 3 and row["latency_process_ms"] == [4.0, 6.0, 5.0]
    assert row["latency_ms"] == 5.0 and row["latency_ci_low_ms"] <= 5.0 <= row["latency_ci_high_ms"]
    assert 4.0 <= row["latency_ci_low_ms"] and row["latency_ci_high_ms"] <= 6.0
    assert row["peak_mem_bytes"] == 110 and row["peak_mem_process_bytes"] == [100, 120, 110]
    assert row["peak_mem_ci_low_bytes"] <= 110 <= row["peak_mem_ci_high_bytes"]
    assert len(row["latency_samples_ms"]) == 6 and row["duration_s"] == 3.0
    assert (row["load_before"], row["load_after"]) == (0.5, 0.7) and row["busy"] is False
    assert combine([_proc(1.0, 1)], 99.0, None)["busy"] is True


def test_one_failing_process_fails_the_case_and_says_which():
    row = combine([_proc(4.0, 100), {"status": "oom", "error": "out of memory", "duration_s": 2.0}], 1, 1)
    assert row["status"] == "oom" and row["error"] == "process 2 of 2: out of memory"
    assert row["repeats"] == 1


def test_run_repeated_measures_in_r_fresh_processes(cases):
    spec = {"target": "pair_cases:small", "device": "cpu"}
    row = run_repeated(spec, timeout=60, timing=FAST, repeats=3)
    assert row["status"] == "ok" and row["repeats"] == 3 and len(row["latency_process_ms"]) == 3
    assert row["latency_ci_low_ms"] <= row["latency_ms"] <= row["latency_ci_high_ms"]
    assert row["peak_mem_ci_low_bytes"] <= row["peak_mem_bytes"] <= row["peak_mem_ci_high_bytes"]
    assert isinstance(row["busy"], bool) and row["affinity"]
    assert row["allocator"].startswith("glibc malloc") and "mmap_max=0" in row["allocator"]
    assert "glibc.malloc.tcache_count=0" in row["allocator"]  # case processes start without the tcache
    results.append_row(cases / "out", row)  # every column it writes is declared
    failed = run_repeated({"target": "pair_cases:fails", "device": "cpu"}, 60, FAST, repeats=3)
    assert failed["status"] == "error" and failed["repeats"] == 0 and "broken case" in failed["error"]
    with pytest.raises(ValueError, match="repeats"):
        run_repeated(spec, repeats=0)


FAULTS = """
import resource, sys, torch
from natbench.measure.memory import fix_malloc_thresholds
if sys.argv[1] == "fixed":
    assert fix_malloc_thresholds()
def call():
    torch.empty(16 * 2**20).fill_(1.0)  # 64 MiB: above glibc's largest mmap threshold
for _ in range(10):  # the heap's free blocks settle after a few calls
    call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    call()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


def test_case_processes_reuse_heap_pages_instead_of_faulting_them_in_every_call():
    import subprocess
    import sys

    def faults(mode):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    pages = 64 * 2**20 // 4096
    assert faults("default") >= pages // 2  # glibc maps large blocks fresh and unmaps them on free
    assert faults("fixed") < pages // 100  # case processes: resident heap pages, reused


def test_peak_memory_still_counts_a_calls_temporaries(cases):
    row = run_repeated({"target": "pair_cases:big_temporary", "device": "cpu"}, 60, FAST, repeats=2)
    assert row["status"] == "ok" and row["peak_mem_bytes"] >= 64 * 2**20, row.get("peak_mem_bytes")
    # allocator bytes: the same in every process, whatever the heap looked like
    assert len(set(row["peak_mem_process_bytes"])) == 1, row["peak_mem_process_bytes"]


def test_pair_rounds_alternate_their_order(cases, monkeypatch):
    order = []
    block = interleave._block

    def recording(fn, n, device, untimed):
        order.append(fn.__name__[-1])
        switches.append(untimed)
        return block(fn, n, device, untimed)

    switches = []

    monkeypatch.setattr(interleave, "_block", recording)
    got = measure_pair({"target": "pair_cases:small"}, {"target": "pair_cases:large"}, FAST)
    assert got["status"] == "ok" and len(got["ratios"]) == len(got["a_ms"]) >= interleave.MIN_ROUNDS
    assert len(got["ratios"]) % 2 == 0
    # the machine's speed read as a case's processes read it: the matmul before / after, a sentinel per round
    assert got["calib_ms"] > 0 and got["sentinel_ms"] > 0
    quiet = measure_pair(
        {"target": "pair_cases:small"}, {"target": "pair_cases:large"}, {**FAST, "sentinel": False}
    )
    assert quiet["status"] == "ok" and quiet["sentinel_ms"] is None
    rounds = ["".join(order[i : i + 2]) for i in range(0, len(order), 2)]
    assert rounds == ["ab", "ba"] * (len(rounds) // 2)
    assert all(switches)  # short calls: one untimed call after each switch
    switches.clear()
    got = measure_pair({"target": "pair_cases:small"}, {"target": "pair_cases:slow"}, FAST)
    assert got["status"] == "ok" and switches[::2] == [True, False] * (len(switches) // 4)
    assert len(got["ratios"]) >= interleave.MIN_ROUNDS  # one member is fast: the full number of rounds
    slow = measure_pair({"target": "pair_cases:slow"}, {"target": "pair_cases:slow"}, FAST)
    assert slow["status"] == "ok" and len(slow["ratios"]) >= interleave.MIN_ROUNDS_SLOW
    broken = measure_pair({"target": "pair_cases:small"}, {"target": "pair_cases:fails"}, FAST)
    assert broken["status"] == "error" and "broken case" in broken["error"]


def test_pair_row_from_processes(cases):
    a = CaseSpec.from_dict({"target": "pair_cases:small", "device": "cpu"})
    b = CaseSpec.from_dict({"target": "pair_cases:large", "device": "cpu"})
    row = run_repeated(PairSpec(a, b).to_dict(), 60, FAST, repeats=2)
    assert row["status"] == "ok" and row["kind"] == "pair" and row["metric"] == "latency"
    assert row["pair_of"] == [a.case_id, b.case_id] and row["repeats"] == 2
    assert row["ratio_ci_low"] <= row["ratio"] <= row["ratio_ci_high"] and len(row["ratio_process"]) == 2
    results.append_row(cases / "out", row)


def test_preset_declares_pairs_and_repeats(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text(
        textwrap.dedent("""
        [settings]
        repeats = 4
        [defaults]
        device = "cpu"
        heads = 2
        head_dim = 8
        [[grid]]
        target = "na"
        backend = "tiled"
        kernel_size = 7
        resolution = 14
        [[pair]]
        resolution = [14, 28]
        kernel_size = 7
        numerator = { target = "na", backend = "tiled" }
        denominator = { target = "window", shifted = true }
    """)
    )
    preset = load_preset(path)
    assert preset.repeats == 4
    specs = expand(preset)
    pairs = [s for s in specs if isinstance(s, PairSpec)]
    assert [p.numerator.resolution for p in pairs] == [14, 28]
    assert all(p.denominator.target == "window" and p.denominator.shifted for p in pairs)
    members = {m.case_id for p in pairs for m in (p.numerator, p.denominator)}
    ids = [s.case_id for s in specs]
    assert members <= set(ids) and len(ids) == len(set(ids)) == 6  # 1 grid case, 3 more members, 2 pairs
    assert load_preset("cpu-quick").repeats >= 3


@pytest.mark.parametrize(
    "pair, match",
    [
        ('numerator = { target = "na" }\n', "needs numerator"),
        ('numerator = { target = "na" }\ndenominator = { colour = 1 }\n', r"unknown field\(s\) \['colour'\]"),
        ('numerator = { target = ["na"] }\ndenominator = { target = "full" }\n', "single values"),
    ],
)
def test_bad_pair_declarations_fail_clearly(tmp_path, pair, match):
    path = tmp_path / "bad.toml"
    path.write_text('[[grid]]\ntarget = "full"\n[[pair]]\n' + pair)
    with pytest.raises(ValueError, match=match):
        load_preset(path)


def test_a_model_mac_count_that_raises_makes_the_case_an_error(monkeypatch):
    from natbench.measure import case

    def broken(spec):
        raise RuntimeError("meta device")

    monkeypatch.setattr(case, "model_case_macs", broken)
    spec = {"target": "nat_mini", "resolution": 32, "device": "cpu"}
    row = repeat.finish(
        spec, [_proc(4.0, 100, kind="model", target="nat_mini"), _proc(4.2, 100, kind="model")]
    )
    assert row["status"] == "error" and "counting MACs raised RuntimeError: meta device" in row["error"]


def _process(calib, latency=None, status="ok"):
    return {
        "status": status,
        "latency_ms": latency or 10 * calib,
        "latency_samples_ms": [1.0],
        "calib_ms": calib,
    }


def test_rows_are_made_of_the_least_contended_processes():
    procs = [_process(c) for c in (0.33, 0.50, 0.34, 0.40, 0.33, 0.36)]
    ref = repeat.quiet_reference(procs)
    assert ref == {"calib_ms": 0.33}
    assert [repeat.contended(p, ref) for p in procs] == [False, True, False, True, False, False]
    # 4 uncontended and the least contended of the others (0.40 rather than 0.50), in the order they ran
    assert [p["calib_ms"] for p in repeat.select(procs, 5, ref)] == [0.33, 0.34, 0.40, 0.33, 0.36]
    row = repeat.finish({"target": "na"}, procs, repeats=5)
    assert row["processes_run"] == 6 and row["contended_processes"] == 2 and row["repeats"] == 5
    assert repeat.needs_rerun(procs, 5, ref) and not repeat.needs_rerun(procs, 4, ref)


def test_one_lucky_reading_does_not_make_every_process_contended():
    # a machine whose quiet readings spread +-5 % (the Intel VM): against the single fastest reading most
    # processes would read over 10 % slow; against the reading a tenth of them beat, only the slow ones do
    readings = [0.178] + [0.19 + 0.001 * i for i in range(20)] + [0.24, 0.26]
    procs = [_process(c) for c in readings]
    ref = repeat.quiet_reference(procs)
    assert ref == {"calib_ms": 0.191}  # the 3rd fastest of 23 (numpy's "lower" 10 % quantile)
    flagged = [p["calib_ms"] for p in procs if repeat.contended(p, ref)]
    assert flagged == [0.24, 0.26]
    # ten or fewer readings: the fastest, as before
    assert repeat.quiet_reference(procs[:10]) == {"calib_ms": 0.178}


def test_a_process_whose_timed_calls_still_faulted_counts_as_contended():
    # window attention 448x448 at ~110 ms a call: 12,549 faults in a call is ~25 ms at 2 us each (its heap still
    # growing); 3 faults is steady; 300 faults in a 2 ms call (0.6 ms) is too
    procs = [_process(0.33, 110.0) for _ in range(3)] + [_process(0.33, 2.0)]
    for p, faults in zip(procs, (12_549, 3, None, 300)):
        p["timed_faults"] = faults
    ref = repeat.quiet_reference(procs)
    assert [repeat.contended(p, ref) for p in procs] == [True, False, False, True]
    row = repeat.finish({"target": "na"}, procs[:3], repeats=2)
    assert row["contended_processes"] == 1 and row["latency_process_ms"] == [110.0, 110.0]
    assert row["timed_faults"] is None  # one process did not count them


def test_run_repeated_reruns_a_slowed_process_once(monkeypatch):
    calibs = iter([0.33, 0.50, 0.33, 0.33, 0.33, 0.33])
    monkeypatch.setattr(repeat, "run_process", lambda *a, **k: _process(next(calibs)))
    row = run_repeated({"target": "na", "device": "cpu"}, repeats=5)
    assert row["processes_run"] == 6 and row["contended_processes"] == 1
    assert row["calib_process_ms"] == [0.33] * 5
    calibs = iter([0.50] * 10)  # evenly slow: judged against its own fastest, nothing is contended
    row = run_repeated({"target": "na", "device": "cpu"}, repeats=5)
    assert row["processes_run"] == 5 and row["contended_processes"] == 0
    calibs = iter([0.33] + [0.50] * 10)  # slowed after the first: 2 re-runs (40 % of 5), then it stops
    row = run_repeated({"target": "na", "device": "cpu"}, repeats=5)
    assert row["processes_run"] == 7 and row["contended_processes"] == 6 and row["repeats"] == 5
    assert row["latency_dropped_process_ms"] == [5.0, 5.0]


def _pair_process(calib, ratio, sentinel=None):
    return {
        "status": "ok",
        "a_ms": [ratio, ratio],
        "b_ms": [1.0, 1.0],
        "ratios": [ratio, ratio],
        "calib_ms": calib,
        "sentinel_ms": sentinel,
        "threads": 1,
        "device_name": "cpu",
        "affinity": [0],
        "allocator": "glibc malloc",
    }


def test_a_pair_reruns_and_leaves_out_its_contended_processes(monkeypatch):
    # a busy spell slows Swin's memory-bound layers more than NA's: the ratio drops in that process
    a = CaseSpec.from_dict({"target": "pair_cases:small", "device": "cpu"})
    b = CaseSpec.from_dict({"target": "pair_cases:large", "device": "cpu"})
    spec = PairSpec(a, b).to_dict()
    got = iter(
        [
            _pair_process(0.33, 0.85, 0.33),
            _pair_process(0.33, 0.75, 0.42),  # the sentinel saw the spell, the calibration did not
            _pair_process(0.33, 0.86, 0.33),
            _pair_process(0.33, 0.84, 0.34),
        ]
    )
    monkeypatch.setattr(repeat, "run_process", lambda *a, **k: next(got))
    row = run_repeated(spec, repeats=3)
    assert row["status"] == "ok" and row["repeats"] == 3
    assert row["processes_run"] == 4 and row["contended_processes"] == 1
    assert row["ratio_process"] == pytest.approx([0.85, 0.86, 0.84])
    assert row["ratio_dropped_process"] == pytest.approx([0.75])
    assert row["ratio_ci_low"] <= 0.85 <= row["ratio_ci_high"]


def test_a_pair_process_whose_members_both_ran_slow_is_contended(monkeypatch):
    # its calibration and sentinel read quiet; only its own members show the slowdown
    def process(scale, ratio):
        return {**_pair_process(0.33, ratio, 0.33), "a_ms": [ratio * scale] * 2, "b_ms": [scale] * 2}

    a = CaseSpec.from_dict({"target": "pair_cases:small", "device": "cpu"})
    b = CaseSpec.from_dict({"target": "pair_cases:large", "device": "cpu"})
    got = iter([process(1.0, 0.85), process(1.3, 0.78), process(1.0, 0.86), process(1.02, 0.84)])
    monkeypatch.setattr(repeat, "run_process", lambda *a, **k: next(got))
    row = run_repeated(PairSpec(a, b).to_dict(), repeats=3)
    assert row["processes_run"] == 4 and row["contended_processes"] == 1
    assert row["ratio_process"] == pytest.approx([0.85, 0.86, 0.84])
    assert row["ratio_dropped_process"] == pytest.approx([0.78])
    assert repeat.members_level(process(1.3, 0.81)) == pytest.approx(1.3 * 0.9)
    assert repeat.members_level(_process(0.33)) is None  # a case's process: its calibrations only


def test_a_failed_rerun_keeps_the_good_processes(monkeypatch):
    results_ = iter([_process(0.33), _process(0.50), _process(0.33), _process(0.33), _process(0.33)])
    results_ = iter([*results_, _process(0.33, status="timeout")])
    monkeypatch.setattr(repeat, "run_process", lambda *a, **k: next(results_))
    row = run_repeated({"target": "na", "device": "cpu"}, repeats=5)
    assert row["status"] == "ok" and row["repeats"] == 5
    assert row["processes_run"] == 6 and row["rerun_failures"] == 1 and row["contended_processes"] == 1


def test_uncontended_processes_are_not_ranked_by_calibration_noise():
    procs = [_process(c) for c in (0.335, 0.331, 0.334, 0.330, 0.333)]
    chosen = repeat.select(procs, 3, repeat.quiet_reference(procs))
    assert [p["calib_ms"] for p in chosen] == [0.335, 0.331, 0.334]  # the first three, in order


def test_run_repeated_spreads_its_processes_over_the_span(monkeypatch):
    clock = [0.0]
    starts = []

    def process(*a, **k):
        starts.append(clock[0])
        clock[0] += 0.5  # each process takes 0.5 s
        return _process(0.33)

    monkeypatch.setattr(repeat, "run_process", process)
    monkeypatch.setattr(repeat.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(repeat.time, "sleep", lambda s: clock.__setitem__(0, clock[0] + s))
    row = run_repeated({"target": "na", "device": "cpu"}, repeats=5, span=8.0)
    assert starts == [0.0, 2.0, 4.0, 6.0, 8.0] and row["processes_run"] == 5
    with pytest.raises(ValueError, match="span"):
        run_repeated({"target": "na", "device": "cpu"}, repeats=2, span=-1)
