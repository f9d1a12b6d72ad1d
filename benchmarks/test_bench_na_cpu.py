"""pytest-benchmark: the CPU speed goal of NA (auto's CPU choice, `fused`; NATBENCH_BENCH_NA=tiled for the
PyTorch kernel), and how time and memory scale with tokens.

1. NA / Swin window attention (window = kernel, shift 0 and k // 2) at 56, 112, 224 maps: k = 7, the
   other kernels 3..13 (map rounded to a multiple of the window) and dilation 2. Window calls run right before
   each timed NA call (pytest-benchmark's setup), so both ratios come from the same run.
   NATBENCH_BENCH_GRID=full runs the whole 28..448 x k 3..13 x dilation 1..4 grid, "56/7/3,..." chosen cases
   (side/kernel/dilation); test_zz_goal_table prints the NA/window table.
2. log-log exponents of time and peak memory against tokens over 28x28..448x448 for fused, tiled, window and
   full.
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks import _na_cases as cases

SIDES = (56, 112, 224)
GOAL = [(side, 7, 1) for side in SIDES]
GOAL += [(side, k, 1) for k in (3, 5, 9, 11, 13) for side in SIDES]
GOAL += [(side, 7, d) for d in (2, 3, 4) for side in SIDES]
GOAL += [(28, 7, 1), (28, 7, 2), (28, 3, 1)]
_GRID = os.environ.get("NATBENCH_BENCH_GRID", "")
if _GRID == "full":  # the whole grid: 28..448, k 3..13, dilation 1..4
    GOAL = [(s, k, d) for s in (28, 56, 112, 224, 448) for k in (3, 5, 7, 9, 11, 13) for d in (1, 2, 3, 4)]
elif _GRID:  # explicit cases "side/kernel/dilation,...", e.g. "56/7/3,112/5/1"
    GOAL = [tuple(int(x) for x in case.split("/")) for case in _GRID.split(",") if case]
GOAL = [(s, k, d) for s, k, d in GOAL if k * d <= s]
SCALING_SIDES = (28, 56, 112, 224, 448)
NA_OP = os.environ.get("NATBENCH_BENCH_NA", "fused")
# Sub-millisecond maps get many rounds: a busy spell of the machine must not decide their median.
ROUNDS = {28: 101, 56: 41, 112: 15, 224: 7, 448: 3}
GOAL_ROWS: list[dict] = []


@pytest.fixture(autouse=True, scope="module")
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(cases.THREADS)
    yield
    torch.set_num_threads(before)


def _side_for(side: int, kernel: int) -> int:
    return max(kernel, round(side / kernel) * kernel)


@pytest.mark.parametrize("side,kernel,dilation", GOAL)
def test_na_vs_window(benchmark, side, kernel, dilation):
    side = _side_for(side, kernel)
    na = cases.make_call(cases.OpCase(NA_OP, side, kernel, dilation))
    windows = {op: cases.make_call(cases.OpCase(op, side, kernel)) for op in ("window", "window-shifted")}
    times: dict[str, list] = {op: [] for op in windows}

    def run_windows():
        for op, fn in windows.items():
            times[op].append(cases.interleaved_ms({op: fn}, rounds=1, warmup=0)[op][0])

    for fn in windows.values():
        fn()
    benchmark.group = f"{NA_OP} / window"
    benchmark.pedantic(
        na,
        setup=run_windows,
        rounds=ROUNDS[min(ROUNDS, key=lambda s: abs(s - side))],
        warmup_rounds=1,
        iterations=1,
    )
    na_ms, na_min = benchmark.stats.stats.median * 1e3, benchmark.stats.stats.min * 1e3
    row = {"side": side, "kernel": kernel, "dilation": dilation, "na_ms": na_ms}
    for op, values in times.items():
        row[f"{op}_ms"] = cases.median(values)
        row[f"ratio_{op}"] = na_ms / row[f"{op}_ms"]
        # Minimum over rounds: the least disturbed call, steadier than the median on a loaded machine.
        row[f"ratio_min_{op}"] = na_min / min(values)
    benchmark.extra_info.update(row)
    GOAL_ROWS.append(row)


def test_scaling_exponents(benchmark, capsys):
    """Fits log(time) and log(peak memory) against log(tokens) per op over 28x28..448x448."""
    points: dict[str, list] = {"fused": [], "tiled": [], "window": [], "full": []}
    for side in SCALING_SIDES:
        calls = {}
        for op in points:
            case = cases.OpCase(op, side)
            if cases.skip_reason(case) is None:
                calls[op] = (case, cases.make_call(case))
        rounds = 5 if side <= 112 else 2
        times = cases.interleaved_ms({op: fn for op, (_, fn) in calls.items()}, rounds=rounds)
        for op, (case, _) in calls.items():
            points[op].append((case.tokens, cases.median(times[op]), cases.peak_memory_bytes(case)))
    largest = cases.make_call(cases.OpCase(NA_OP, SCALING_SIDES[-1]))
    benchmark.group = "scaling"
    benchmark.pedantic(largest, rounds=1, warmup_rounds=0, iterations=1)
    lines = [f"{'op':>7} {'tokens':>8} {'ms':>10} {'peak MiB':>9}"]
    for op, rows in points.items():
        lines += [f"{op:>7} {t:>8} {ms:>10.2f} {mem / 2**20:>9.1f}" for t, ms, mem in rows]
        if len(rows) >= 3:  # a fit with a confidence interval needs 3 points
            tokens = [r[0] for r in rows]
            time_exp = cases.loglog_slope(tokens, [r[1] for r in rows])
            mem_exp = cases.loglog_slope(tokens, [r[2] for r in rows])
            benchmark.extra_info[f"{op}_time_exponent"] = time_exp
            benchmark.extra_info[f"{op}_memory_exponent"] = mem_exp
            lines.append(
                f"{op:>7} exponents over {tokens[0]}..{tokens[-1]} tokens: "
                f"time {time_exp:.2f}, peak memory {mem_exp:.2f}"
            )
    with capsys.disabled():
        print(
            f"\nscaling on CPU, k=7, 2 heads x 32, fp32, batch 1, {cases.THREADS} threads "
            f"(full attention only up to 112x112: {cases.skip_reason(cases.OpCase('full', 224))})"
        )
        print("\n".join(lines))
    assert points[NA_OP], f"{NA_OP} did not run"


def test_zz_goal_table(capsys):
    """Prints the speed-goal table of test_na_vs_window (runs last in this file)."""
    if not GOAL_ROWS:
        pytest.skip("no NA / window comparison ran in this session")
    lines = [
        f"{'map':>9} {'k':>3} {'dil':>3} {'NA ms':>9} {'window ms':>9} {'shifted ms':>10} "
        f"{'NA/win':>9} {'NA/shifted':>13} {'min: /win':>9} {'/shifted':>8}"
    ]
    for r in GOAL_ROWS:
        lines.append(
            f"{r['side']:>4}x{r['side']:<4} {r['kernel']:>3} {r['dilation']:>3} {r['na_ms']:>9.2f} "
            f"{r['window_ms']:>9.2f} {r['window-shifted_ms']:>10.2f} {r['ratio_window']:>9.2f} "
            f"{r['ratio_window-shifted']:>13.2f} {r['ratio_min_window']:>9.2f} {r['ratio_min_window-shifted']:>8.2f}"
        )
    with capsys.disabled():
        print(
            f"\n{NA_OP} NA vs Swin window attention (window = kernel), CPU fp32, {cases.THREADS} threads "
            f"(median; min; worst NA/shifted {max(r['ratio_window-shifted'] for r in GOAL_ROWS):.2f})"
        )
        print("\n".join(lines))
