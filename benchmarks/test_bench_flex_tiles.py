"""pytest-benchmark: compiled flex NA on CPU in tile order vs row order, against `tiled` (k = 7, fp32).

Tile order permutes tokens into 8x16 tiles so that each 128-token block's windows reach a fixed number of
key blocks: time should grow linearly with tokens. Prints per map the three times (interleaved rounds), the
log-log exponent of each flex order over the maps, and flex / tiled at the largest map. First calls compile
(seconds per shape). NATBENCH_BENCH_FLEX_SIDES overrides the maps ("28,56,112,224").
"""

from __future__ import annotations

import os

import pytest
import torch

from benchmarks import _na_cases as cases
from natbench.attention.flex import na2d_flex
from natbench.attention.tiled import na2d_tiled

SIDES = tuple(int(s) for s in os.environ.get("NATBENCH_BENCH_FLEX_SIDES", "28,56,112,224").split(","))
HEADS, DIM, K = 2, 32, 7


def _calls(side: int):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, side, side, HEADS, DIM, generator=gen) for _ in range(3))
    args = (q, k, v, (K, K), (1, 1), None, DIM**-0.5)

    def run(fn, **kw):
        def call():
            with torch.inference_mode():
                return fn(*args, **kw)

        return call

    return {
        "flex-tiles": run(na2d_flex, order="tiles"),
        "flex-rows": run(na2d_flex, order="rows"),
        "tiled": run(na2d_tiled),
    }


def test_flex_tile_order_scaling(benchmark, capsys):
    before = torch.get_num_threads()
    torch.set_num_threads(cases.THREADS)
    try:
        rows = []
        for side in SIDES:
            calls = _calls(side)
            for name in ("flex-tiles", "flex-rows"):
                assert calls[name]()[1] == "flex-compiled", f"{name} did not compile at {side}"
            times = cases.interleaved_ms(calls, rounds=5 if side <= 112 else 3)
            rows.append((side, {n: cases.median(t) for n, t in times.items()}))
        benchmark.group = "flex tiles"
        benchmark.pedantic(_calls(SIDES[0])["flex-tiles"], rounds=1, warmup_rounds=1, iterations=1)
    finally:
        torch.set_num_threads(before)
    tokens = [s * s for s, _ in rows]
    lines = [f"{'map':>9} {'flex-tiles ms':>13} {'flex-rows ms':>12} {'tiled ms':>9} {'tiles/tiled':>11}"]
    for side, t in rows:
        lines.append(
            f"{side:>4}x{side:<4} {t['flex-tiles']:>13.2f} {t['flex-rows']:>12.2f} {t['tiled']:>9.2f} "
            f"{t['flex-tiles'] / t['tiled']:>11.2f}"
        )
    for name in ("flex-tiles", "flex-rows", "tiled"):
        if len(rows) >= 3:
            exp = cases.loglog_slope(tokens, [t[name] for _, t in rows])
            benchmark.extra_info[f"{name}_exponent"] = exp
            lines.append(f"{name} time exponent in tokens over {tokens[0]}..{tokens[-1]}: {exp:.2f}")
    with capsys.disabled():
        print(
            f"\ncompiled flex NA on CPU, k={K}, {HEADS} heads x {DIM}, fp32, batch 1, {cases.THREADS} threads"
        )
        print("\n".join(lines))
    if not rows:
        pytest.fail("no map ran")
