"""pytest-benchmark: NAT / Swin CPU throughput as interleaved pairs in one process (batch 8, 2 threads).

Each pair runs one NAT forward and one Swin forward back to back (the order alternates), so both see the same
machine load; the ratio is Swin latency / NAT latency (NAT throughput / Swin throughput) per pair, reported as
the median over pairs with the lowest and highest pair. NATBENCH_BENCH_PAIRS picks the pairs
("nat_tiny:swin_tiny:float32,..."), NATBENCH_BENCH_ROUNDS the pairs per row.
"""

from __future__ import annotations

import os
import statistics
import time

import pytest
import torch

from benchmarks import _na_cases as cases
from natbench.models.registry import create_model

DEFAULT_PAIRS = (
    "nat_tiny:swin_tiny:float32,nat_tiny:swin_tiny:bfloat16,"
    "nat_mini:swin_tiny:float32,nat_small:swin_small:float32,nat_base:swin_base:float32"
)
PAIRS = [tuple(p.split(":")) for p in os.environ.get("NATBENCH_BENCH_PAIRS", DEFAULT_PAIRS).split(",") if p]
ROUNDS = int(os.environ.get("NATBENCH_BENCH_ROUNDS", "5"))
BATCH = int(os.environ.get("NATBENCH_BENCH_BATCH", "8"))
ROWS: list[dict] = []


def paired_ratios(
    first, second, rounds: int, warmup: int = 1
) -> tuple[list[float], list[float], list[float]]:
    """Latencies of `first` and `second` (ms) and second/first per pair; the order alternates per round."""
    for _ in range(warmup):
        first(), second()
    a, b = [], []
    for i in range(rounds):
        order = ((first, a), (second, b)) if i % 2 == 0 else ((second, b), (first, a))
        for fn, out in order:
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1e3)
    return a, b, [y / x for x, y in zip(a, b)]


def _forward(name: str, dtype: torch.dtype):
    model = create_model(name).eval().to(dtype)
    x = torch.randn(BATCH, 3, 224, 224, dtype=dtype)

    def call():
        with torch.inference_mode():
            model(x)

    return call


@pytest.mark.parametrize("nat,swin,dtype", PAIRS, ids=[":".join(p) for p in PAIRS])
def test_nat_vs_swin_throughput(benchmark, nat, swin, dtype):
    before = torch.get_num_threads()
    torch.set_num_threads(cases.THREADS)
    try:
        nat_fn, swin_fn = _forward(nat, getattr(torch, dtype)), _forward(swin, getattr(torch, dtype))
        nat_ms, swin_ms, ratios = paired_ratios(nat_fn, swin_fn, ROUNDS)
        benchmark.group = "nat / swin"
        benchmark.pedantic(nat_fn, rounds=1, warmup_rounds=0, iterations=1)
    finally:
        torch.set_num_threads(before)
    row = {
        "nat": nat,
        "swin": swin,
        "dtype": dtype,
        "nat_img_s": BATCH * 1e3 / statistics.median(nat_ms),
        "swin_img_s": BATCH * 1e3 / statistics.median(swin_ms),
        "ratio": statistics.median(ratios),
        "ratio_low": min(ratios),
        "ratio_high": max(ratios),
        "pairs": len(ratios),
    }
    benchmark.extra_info.update(row)
    ROWS.append(row)


def test_zz_nat_vs_swin_table(capsys):
    if not ROWS:
        pytest.skip("no NAT / Swin pair ran in this session")
    lines = [
        f"{'NAT':>10} {'Swin':>11} {'dtype':>9} {'NAT img/s':>9} {'Swin img/s':>10} {'NAT/Swin':>8} {'pairs: min..max':>16}"
    ]
    for r in ROWS:
        lines.append(
            f"{r['nat']:>10} {r['swin']:>11} {r['dtype']:>9} {r['nat_img_s']:>9.2f} {r['swin_img_s']:>10.2f} "
            f"{r['ratio']:>8.3f} {r['ratio_low']:>7.3f}..{r['ratio_high']:.3f} (n={r['pairs']})"
        )
    with capsys.disabled():
        print(
            f"\nNAT / Swin CPU throughput, batch {BATCH}, 224px, {cases.THREADS} threads, interleaved pairs"
        )
        print("\n".join(lines))
