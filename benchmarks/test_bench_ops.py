"""pytest-benchmark: each NA backend against Swin window attention (plain and shifted) and full attention, CPU.

`pytest benchmarks/test_bench_ops.py` prints a table at the end: time per call, its ratio to window attention
measured in the same run, and peak memory (fresh subprocess per case; set NATBENCH_BENCH_MEMORY=0 to skip).
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks import _na_cases as cases

SIDES = (28, 56, 112, 224)
KERNEL = 7
# Baselines first: the NA cases of a side read the window time measured before them.
ORDER = ("window", "window-shifted", "full", "tiled", "flex", "natten", "reference")
ROUNDS = {"reference": 3, "natten": 2, "full": 3, "flex": 10}
RESULTS: dict[tuple[int, str], dict] = {}


@pytest.fixture(autouse=True, scope="module")
def _threads():
    before = torch.get_num_threads()
    torch.set_num_threads(cases.THREADS)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("op", ORDER)
@pytest.mark.parametrize("side", SIDES)
def test_op(benchmark, side, op):
    case = cases.OpCase(op, side, KERNEL)
    reason = cases.skip_reason(case)
    if reason:
        RESULTS[side, op] = {"skipped": reason}
        pytest.skip(reason)
    call = cases.make_call(case)
    benchmark.group = f"{side}x{side} k={KERNEL}"
    benchmark.extra_info.update(op=op, side=side, kernel=KERNEL, tokens=case.tokens, threads=cases.THREADS)
    benchmark.pedantic(call, rounds=ROUNDS.get(op, 20), warmup_rounds=1, iterations=1)
    row = {"ms": benchmark.stats.stats.median * 1e3, "min_ms": benchmark.stats.stats.min * 1e3}
    window = RESULTS.get((side, "window"), {})
    if "ms" in window:
        row["ratio_to_window"] = row["ms"] / window["ms"]
        row["min_ratio_to_window"] = row["min_ms"] / window["min_ms"]
    if os.environ.get("NATBENCH_BENCH_MEMORY", "1") != "0":
        row["peak_mem_bytes"] = cases.peak_memory_bytes(case)
    benchmark.extra_info.update(row)
    RESULTS[side, op] = row


def test_zz_summary_table(capsys):
    """Prints the table of what ran above (runs last in this file)."""
    if not RESULTS:
        pytest.skip("no op benchmark ran in this session")
    lines = [
        f"{'map':>9} {'op':>15} {'ms':>10} {'x window':>9} {'min ms':>10} {'x window':>9} {'peak MiB':>9}"
    ]
    for side in SIDES:
        for op in ORDER:
            row = RESULTS.get((side, op))
            if row is None:
                continue
            if "skipped" in row:
                lines.append(
                    f"{side:>4}x{side:<4} {op:>15} {'-':>10} {'-':>9} {'-':>9}  skipped: {row['skipped']}"
                )
                continue
            ratio = f"{row['ratio_to_window']:.2f}" if "ratio_to_window" in row else "-"
            ratio_min = f"{row['min_ratio_to_window']:.2f}" if "min_ratio_to_window" in row else "-"
            mem = f"{row['peak_mem_bytes'] / 2**20:.1f}" if "peak_mem_bytes" in row else "-"
            lines.append(
                f"{side:>4}x{side:<4} {op:>15} {row['ms']:>10.2f} {ratio:>9} {row['min_ms']:>10.2f} {ratio_min:>9} {mem:>9}"
            )
    with capsys.disabled():
        print(
            f"\nattention ops on CPU, k={KERNEL}, 2 heads x 32, fp32, batch 1, {cases.THREADS} threads (median)"
        )
        print("\n".join(lines))
