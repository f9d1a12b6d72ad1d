"""Can the intervals be trusted? The issue-12 targets, measured on this machine (prints every figure).

    python -m benchmarks.test_bench_intervals [--threads N] [--runs 6] [--tries 10] [--planted-repeats R]
                                              [--spread [SECONDS]] [--skip order,aa,...]
    pytest benchmarks/test_bench_intervals.py -s      # the same through pytest-benchmark (extra_info)

0. order effect: the first op timed in a fresh process against the same op timed after another one.
1. coverage: `runs` fresh repeated measurements (each = what `natbench run` does: R processes, median and
   95 % interval across them) of tiled NA and shifted-window attention at 56x56 and 112x112, k = 7, 4 x 32:
   the share of ordered pairs (i, j) whose run i interval holds run j's median (target >= 70 %), for
   latency and peak memory; and the interval widths against the spread of the medians they describe: their
   range, and their 95 % spread (3.92 SD, what a calibrated 95 % interval spans). With --spread the runs go in
   rounds over the four ops, paced over the drift profile's span (the time scale its floor describes) or over
   SECONDS (a rerun later the same hour: the spells the pooled floor describes).
2. paired ratio CV: NA / window ratio from `runs` paired measurements at each shape (target CV <= 5 %).
3. A/A: two smoke sweeps of this tree compared with natbench compare (target 0 regressions).
4. planted slowdown: a test-only case doing 10 % more work, compared against the plain one in `tries`
   fresh tries (target flagged >= 9 of 10), at compare's default threshold (5 %) and at 10 %: as runs one
   after the other, and interleaved (`natbench ab`, the target's measure), each with an A/A; with
   --planted-repeats, the processes per run (power: more processes separate a 10 % change from noisier spells).
5. group fit (informative): cpu-quick's kernel exponent (fused NA 56x56, k = 5..13) from `runs` interleaved
   groups and from as many sets of separately timed cases, alternating: the exponents' SD, how often one run's
   interval holds another's exponent, and the intervals' widths.
A loaded shared machine widens everything: the load average is printed next to the numbers.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

COVERAGE_TARGET = 0.70
RATIO_CV_TARGET = 0.05
PLANTED_TARGET = 9 / 10


def _cpu_quick() -> tuple[int, dict, int | None]:
    from natbench.sweep.preset import load_preset

    preset = load_preset("cpu-quick")
    return preset.repeats, dict(preset.timing), preset.threads


REPEATS, TIMING, THREADS = _cpu_quick()  # what the committed run measured with
SHAPES = (56, 112)


def _op(target: str, resolution: int) -> dict:
    spec = {"target": target, "resolution": resolution, "kernel_size": 7, "heads": 4, "head_dim": 32}
    spec.update({"backend": "tiled"} if target == "na" else {"shifted": True})
    return {**spec, "device": "cpu"}


def _contains(rows: list[dict], low: str, high: str, centre: str) -> tuple[int, int]:
    hits = total = 0
    for i, j in itertools.permutations(range(len(rows)), 2):
        total += 1
        hits += rows[i][low] <= rows[j][centre] <= rows[i][high]
    return hits, total


def coverage(runs: int, threads: int | None, spread: float | bool = False) -> dict:
    """As `natbench run` measures: with this machine's drift floor when `natbench noise` has measured one;
    the intervals before the floor (latency_process_ci_*) are scored too. Back to back, each op's runs take
    ~12 s; `spread`: in rounds over the four ops, paced so that each op's runs span the drift profile's rounds
    (True: a run compared with one made a few minutes later) or `spread` seconds."""
    from natbench.measure import drift
    from natbench.measure.repeat import run_repeated

    profile = drift.load(threads)
    if spread is True and profile is None:
        raise RuntimeError("--spread paces the runs over the drift profile's span: run natbench noise first")
    span = profile.span_s if spread is True else float(spread)
    ops = list(itertools.product(("na", "window"), SHAPES))
    rows_of: dict[tuple, list[dict]] = {op: [] for op in ops}
    order = (
        [(i, op) for i in range(runs) for op in ops]
        if spread
        else [(i, op) for op in ops for i in range(runs)]
    )
    start = time.monotonic()
    for i, (target, res) in order:
        if spread and (target, res) == ops[0]:  # a round starts: wait for its slot
            time.sleep(max(0.0, start + i * span / max(1, runs - 1) - time.monotonic()))
        row = run_repeated(_op(target, res), 300, TIMING, threads=threads, repeats=REPEATS, drift=profile)
        if row["status"] != "ok":
            raise RuntimeError(f"{target} {res}: {row['error']}")
        row.setdefault("latency_process_ci_low_ms", row["latency_ci_low_ms"])
        row.setdefault("latency_process_ci_high_ms", row["latency_ci_high_ms"])
        rows_of[(target, res)].append(row)
    out = {}
    for (target, res), rows in rows_of.items():
        lat = _contains(rows, "latency_ci_low_ms", "latency_ci_high_ms", "latency_ms")
        own = _contains(rows, "latency_process_ci_low_ms", "latency_process_ci_high_ms", "latency_ms")
        mem = _contains(rows, "peak_mem_ci_low_bytes", "peak_mem_ci_high_bytes", "peak_mem_bytes")
        medians = [r["latency_ms"] for r in rows]
        widths = [r["latency_ci_high_ms"] - r["latency_ci_low_ms"] for r in rows]
        own_widths = [r["latency_process_ci_high_ms"] - r["latency_process_ci_low_ms"] for r in rows]
        out[f"{target} {res}x{res}"] = {
            # what `natbench run` added (the median over the runs)
            "drift_floor": (
                statistics.median(r.get("latency_drift_cv") or 0.0 for r in rows) if profile else None
            ),
            "latency_coverage": lat[0] / lat[1],
            "latency_coverage_without_floor": own[0] / own[1],
            "median_width_without_floor_ms": statistics.median(own_widths),
            "memory_coverage": mem[0] / mem[1],
            "medians_ms": medians,
            "cv": statistics.stdev(medians) / statistics.mean(medians),
            "median_interval_width_ms": statistics.median(widths),
            "spread_of_medians_ms": max(medians) - min(medians),
            # What a calibrated 95 % interval of one run's median spans: 2 x 1.96 SD of the runs' medians.
            # Six draws span ~2.5 SD on average, so such an interval is ~1.5x their range.
            "spread95_of_medians_ms": 2 * 1.96 * statistics.stdev(medians),
            "peaks_mib": [r["peak_mem_bytes"] / 2**20 for r in rows],
            "seconds_per_run": statistics.mean(r["duration_s"] for r in rows),
            "busy_runs": sum(bool(r.get("busy")) for r in rows),
        }
    return out


def ratio_cv(runs: int, threads: int | None) -> dict:
    from natbench.measure.repeat import PairSpec, run_pair
    from natbench.measure.spec import CaseSpec

    out = {}
    for res in SHAPES:
        pair = PairSpec(CaseSpec.from_dict(_op("na", res)), CaseSpec.from_dict(_op("window", res)))
        ratios, covered = [], []
        rows = []
        for _ in range(runs):
            row = run_pair(pair, 300, TIMING, threads=threads, repeats=REPEATS)
            if row["status"] != "ok":
                raise RuntimeError(f"pair {res}: {row['error']}")
            rows.append(row)
            ratios.append(row["ratio"])
        hits, total = _contains(rows, "ratio_ci_low", "ratio_ci_high", "ratio")
        covered.append(hits / total)
        out[f"na/window {res}x{res}"] = {
            "ratios": ratios,
            "cv": statistics.stdev(ratios) / statistics.mean(ratios),
            "coverage": covered[0],
            "numerator_ms": [statistics.median(r["numerator_process_ms"]) for r in rows],
        }
    return out


def _ok(row: dict) -> dict:
    if row["status"] != "ok":
        raise RuntimeError(f"{row['case_id']}: {row.get('error')}")
    return row


def group_fit(runs: int, threads: int | None) -> dict:
    from natbench.measure.group import GroupSpec
    from natbench.measure.repeat import run_repeated
    from natbench.measure.spec import CaseSpec
    from natbench.measure.stats import fit_power_law, fit_power_law_paired

    ks = [5, 7, 9, 11, 13]
    base = {"target": "na", "backend": "fused", "resolution": 56, "heads": 2, "head_dim": 32, "device": "cpu"}
    members = tuple(CaseSpec.from_dict({**base, "kernel_size": k}) for k in ks)
    group = GroupSpec(members, "kernel_size").to_dict()
    fits: dict[str, list[dict]] = {"interleaved": [], "separate": []}
    for i in range(runs):
        for how in ("interleaved", "separate")[:: 1 if i % 2 == 0 else -1]:
            if how == "interleaved":
                row = _ok(run_repeated(group, 300, TIMING, threads=threads, repeats=REPEATS))
                f = fit_power_law_paired(ks, [list(p) for p in zip(*row["member_process_ms"])])
            else:
                rows = [
                    _ok(run_repeated(m.to_dict(), 300, TIMING, threads=threads, repeats=REPEATS))
                    for m in members
                ]
                f = fit_power_law(ks, [r["latency_process_ms"] for r in rows])
            fits[how].append({"exponent": f.exponent, "low": f.ci_low, "high": f.ci_high})
    out = {}
    for how, got in fits.items():
        hits, total = _contains(got, "low", "high", "exponent")
        out[how] = {
            "exponents": [g["exponent"] for g in got],
            "sd": statistics.stdev(g["exponent"] for g in got),
            "coverage": hits / total,
            "median_width": statistics.median(g["high"] - g["low"] for g in got),
        }
    return out


def _sweep(preset: str, out: Path, threads: int | None) -> None:
    from natbench.sweep.runner import run_sweep

    run_sweep(preset, out, progress=False, threads=threads)


def a_a(threads: int | None, tmp: Path) -> dict:
    from natbench.compare import compare

    _sweep("smoke", tmp / "smoke-a", threads)
    _sweep("smoke", tmp / "smoke-b", threads)
    result = compare(tmp / "smoke-a", tmp / "smoke-b")
    return {
        "regressions": len(result.regressions),
        "improvements": len(result.improvements),
        "compared": len(result.cases),
        "ratios": {c.case_id[:24]: round(c.ratio, 3) for c in result.cases},
        "exit_code": result.exit_code,
    }


PLANTED = """
import torch

FACTOR = {factor}


def work(spec, device, dtype):
    a = torch.randn(96, 96)
    calls = round(40 * FACTOR)  # the slow variant does exactly 10 % more of the same work

    def call():
        for _ in range(calls):
            a @ a

    return call
"""


def planted(tries: int, threads: int | None, tmp: Path, repeats: int = REPEATS) -> dict:
    """The same case id (target planted_case:work) from two modules: the plain one and one 10 % slower, each
    run measured in `repeats` fresh processes."""
    from natbench import results
    from natbench.compare import compare
    from natbench.measure.repeat import run_repeated

    dirs = {}
    for name, factor in (("plain", 1.0), ("slow", 1.1)):
        d = tmp / f"planted-{name}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "planted_case.py").write_text(textwrap.dedent(PLANTED.format(factor=factor)))
        dirs[name] = d
    spec = {"target": "planted_case:work", "device": "cpu"}
    flagged = {0.1: 0, 0.05: 0}
    aa_flagged = 0
    ratios = []
    for t in range(tries):
        out = {}
        for name in ("plain", "slow", "plain2"):
            sys.path.insert(0, str(dirs[name.rstrip("2")]))
            try:
                row = run_repeated(spec, 120, TIMING, threads=threads, repeats=repeats)
            finally:
                sys.path.pop(0)
            out[name] = tmp / f"try{t}-{name}"
            results.append_row(out[name], row)
        for threshold in flagged:
            flagged[threshold] += bool(compare(out["plain"], out["slow"], threshold).regressions)
        aa_flagged += bool(compare(out["plain"], out["plain2"]).regressions)
        ratios.append(compare(out["plain"], out["slow"]).cases[0].ratio)
    return {
        "tries": tries,
        "repeats": repeats,
        "flagged_at_10pct": flagged[0.1],
        "flagged_at_5pct": flagged[0.05],
        "a_a_flagged": aa_flagged,
        "ratios": [round(r, 3) for r in ratios],
        "interleaved": planted_ab(tries, threads, tmp, dirs, spec, repeats),
    }


def planted_ab(tries: int, threads: int | None, tmp: Path, dirs: dict, spec: dict, repeats: int) -> dict:
    """The same through `natbench ab`: plain and slow processes interleaved; and plain against itself."""
    from natbench import results
    from natbench.measure.ab import judge, run_ab

    flagged = {0.1: 0, 0.05: 0}
    aa_flagged = sentinel_moved = 0
    ratios = []
    for t in range(tries):
        for label, new in (("ab", "slow"), ("ab-aa", "plain")):
            rows = run_ab(
                spec, {"base": [str(dirs["plain"])], "new": [str(dirs[new])]}, 120, TIMING, threads, repeats
            )
            d = tmp / f"try{t}-{label}"
            for side, row in rows.items():
                results.append_row(d / side, row)
            if label == "ab-aa":
                aa_flagged += bool(judge(rows, d, 0.05, 0.05)[0].regressions)
                continue
            for threshold in flagged:
                result, note = judge(rows, d, threshold, 0.05)
                flagged[threshold] += bool(result.regressions)
            sentinel_moved += bool(note and "differ" in note)
            ratios.append(result.cases[0].ratio)
    return {
        "flagged_at_10pct": flagged[0.1],
        "flagged_at_5pct": flagged[0.05],
        "a_a_flagged": aa_flagged,
        "ratios": [round(r, 3) for r in ratios],
        "sentinel_moved": sentinel_moved,
    }


def order_task(prime: bool) -> list[float]:
    """In one fresh process: window 56x56, then tiled NA, then window again (latency medians, ms)."""
    from natbench.measure import timer
    from natbench.measure.case import measure_case

    if not prime:
        timer.PRIME_SECONDS = 0.0
    window, na = _op("window", 56), _op("na", 56)
    return [measure_case(s, TIMING, with_env=False, memory=False)["latency_ms"] for s in (window, na, window)]


def order_effect(tries: int, threads: int | None) -> dict:
    """First op timed in a process against the same op timed after another one, primed and not."""
    from natbench.measure.isolate import run_in_process

    out = {}
    for prime in (True, False):
        firsts = []
        for _ in range(tries):
            got, status, error = run_in_process(order_task, {"prime": prime}, 300, "cpu", threads=threads)
            if got is None:
                raise RuntimeError(f"order check: {status}: {error}")
            firsts.append(got[0] / got[2])
        out["primed" if prime else "not primed"] = firsts
    return out


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--threads",
        type=int,
        default=THREADS,
        help=f"torch threads per case (default: cpu-quick's, {THREADS})",
    )
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--tries", type=int, default=10)
    parser.add_argument(
        "--planted-repeats",
        type=int,
        default=REPEATS,
        help=f"processes per run in the planted-slowdown check (default: cpu-quick's, {REPEATS})",
    )
    parser.add_argument(
        "--spread",
        nargs="?",
        const=True,
        default=False,
        type=float,
        metavar="SECONDS",
        help="coverage: run the ops in rounds spanning the drift profile's span, or SECONDS "
        "(default: each op's runs back to back)",
    )
    parser.add_argument("--skip", default="", help="comma list of: order,coverage,ratio,group,aa,planted")
    args = parser.parse_args(argv)
    skip = set(filter(None, args.skip.split(",")))
    threads = args.threads
    start = time.monotonic()
    print(f"load average {_load()} at start, {os.cpu_count()} CPUs, threads {threads or 'torch default'}")
    met = True
    with tempfile.TemporaryDirectory(prefix="natbench-bench-") as tmp:
        tmp = Path(tmp)
        if "order" not in skip:
            for label, ratios in order_effect(3, threads).items():
                print(
                    f"order effect ({label}): first window 56x56 / the same after tiled NA in one process: "
                    f"{', '.join(f'{r:.2f}' for r in ratios)} (1.00 = none)"
                )
        if "coverage" not in skip:
            for case, c in coverage(args.runs, threads, args.spread).items():
                floor = c["drift_floor"]
                print(
                    f"coverage {case}: latency {c['latency_coverage']:.0%} with its op's drift floor "
                    f"({'%.1f %%' % (100 * floor) if floor is not None else 'none: run natbench noise'}), "
                    f"{c['latency_coverage_without_floor']:.0%} without (width "
                    f"{c['median_width_without_floor_ms']:.3f} ms), memory {c['memory_coverage']:.0%} "
                    f"(target >= 70 %); medians {', '.join(f'{m:.3f}' for m in c['medians_ms'])} ms "
                    f"(CV {c['cv']:.1%}); interval width {c['median_interval_width_ms']:.3f} ms vs the medians' "
                    f"range {c['spread_of_medians_ms']:.3f} ms and 95 % spread (3.92 SD) "
                    f"{c['spread95_of_medians_ms']:.3f} ms; peaks {', '.join(f'{p:.2f}' for p in c['peaks_mib'])}"
                    f" MiB; {c['seconds_per_run']:.1f} s per run; busy {c['busy_runs']}/{args.runs}"
                )
                met &= c["latency_coverage"] >= COVERAGE_TARGET and c["memory_coverage"] >= COVERAGE_TARGET
            print(f"  load average {_load()}")
        if "ratio" not in skip:
            for case, r in ratio_cv(args.runs, threads).items():
                print(
                    f"paired ratio {case}: CV {r['cv']:.1%} (target <= 5 %), interval coverage "
                    f"{r['coverage']:.0%}; ratios {', '.join(f'{v:.3f}' for v in r['ratios'])}; NA medians "
                    f"in the pairs {', '.join(f'{v:.3f}' for v in r['numerator_ms'])} ms"
                )
                met &= r["cv"] <= RATIO_CV_TARGET
            print(f"  load average {_load()}")
        if "group" not in skip:
            for how, g in group_fit(args.runs, threads).items():
                print(
                    f"kernel exponent, {how}: SD {g['sd']:.3f}, one run's interval holds another's exponent "
                    f"{g['coverage']:.0%}, median width {g['median_width']:.3f}; exponents "
                    f"{', '.join(f'{e:.3f}' for e in g['exponents'])}"
                )
            print(f"  load average {_load()}")
        if "aa" not in skip:
            aa = a_a(threads, tmp)
            print(
                f"A/A smoke: {aa['regressions']} regression(s), {aa['improvements']} improvement(s) over "
                f"{aa['compared']} cases (target 0 regressions); ratios {aa['ratios']}"
            )
            met &= aa["regressions"] == 0
            print(f"  load average {_load()}")
        if "planted" not in skip:
            p = planted(args.tries, threads, tmp, args.planted_repeats)
            print(
                f"planted 10 % slowdown ({p['repeats']} processes a run): flagged {p['flagged_at_5pct']}/{p['tries']} at the default --threshold "
                f"0.05 (target >= 9/10), {p['flagged_at_10pct']}/{p['tries']} at 0.1; A/A of the plain case "
                f"flagged {p['a_a_flagged']}/{p['tries']}; measured ratios {p['ratios']}"
            )
            ab = p["interleaved"]
            print(
                f"  interleaved (natbench ab, plain and slow processes alternating): flagged "
                f"{ab['flagged_at_5pct']}/{p['tries']} at 0.05, {ab['flagged_at_10pct']}/{p['tries']} at 0.1; "
                f"A/A flagged {ab['a_a_flagged']}/{p['tries']}; measured ratios {ab['ratios']}; the sentinel "
                f"read differently on the two sides (p <= 0.05) in {ab['sentinel_moved']}/{p['tries']}"
            )
            met &= ab["flagged_at_5pct"] >= PLANTED_TARGET * p["tries"] and ab["a_a_flagged"] == 0
            met &= p["a_a_flagged"] == 0
            print(f"  load average {_load()}")
    print(f"total {time.monotonic() - start:.0f} s; targets {'met' if met else 'NOT met'}")
    return 0 if met else 1


def test_interval_targets(benchmark):
    result = benchmark.pedantic(lambda: main(["--runs", "3", "--tries", "3"]), rounds=1, iterations=1)
    benchmark.extra_info.update(exit_code=result)


if __name__ == "__main__":
    raise SystemExit(main())
