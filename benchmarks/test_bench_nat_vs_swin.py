"""pytest-benchmark: NAT / Swin CPU throughput as interleaved pairs (batch 8, 224x224, 2 threads).

Each pair is natbench's own paired measurement (natbench.measure.pair): NAT and Swin built in the same fresh
case process (the sweeps' allocator settings), timed in alternating rounds, in NATBENCH_BENCH_REPEATS
processes; NAT / Swin throughput = Swin latency / NAT latency, with its 95 % interval over the processes.
NATBENCH_BENCH_PAIRS picks the pairs ("nat_tiny:swin_tiny:float32,...").

    pytest benchmarks/test_bench_nat_vs_swin.py -s
"""

from __future__ import annotations

import os
import statistics

import pytest

from benchmarks import _na_cases as cases
from natbench.measure.repeat import PairSpec, run_pair
from natbench.measure.spec import CaseSpec

DEFAULT_PAIRS = (
    "nat_tiny:swin_tiny:float32,nat_tiny:swin_tiny:bfloat16,"
    "nat_mini:swin_tiny:float32,nat_small:swin_small:float32,nat_base:swin_base:float32"
)
PAIRS = [tuple(p.split(":")) for p in os.environ.get("NATBENCH_BENCH_PAIRS", DEFAULT_PAIRS).split(",") if p]
REPEATS = int(os.environ.get("NATBENCH_BENCH_REPEATS", "3"))
BATCH = int(os.environ.get("NATBENCH_BENCH_BATCH", "8"))
TIMING = {"min_run_time": 0.1, "warmup": 0.0, "min_warmup_calls": 1, "min_samples": 2}
ROWS: list[dict] = []


def nat_vs_swin(nat: str, swin: str, dtype: str, repeats: int = REPEATS) -> dict:
    """NAT / Swin throughput of one pair from `repeats` fresh processes (raises if the pair failed)."""
    spec = {"resolution": 224, "batch": BATCH, "dtype": dtype, "device": "cpu"}
    pair = PairSpec(CaseSpec.from_dict({**spec, "target": nat}), CaseSpec.from_dict({**spec, "target": swin}))
    row = run_pair(pair, 900, TIMING, threads=cases.THREADS, repeats=repeats)
    if row["status"] != "ok":
        raise RuntimeError(f"{nat} / {swin} {dtype}: {row['status']}: {row.get('error')}")
    nat_ms = statistics.median(row["numerator_process_ms"])
    swin_ms = statistics.median(row["denominator_process_ms"])
    return {
        "nat": nat,
        "swin": swin,
        "dtype": dtype,
        "nat_img_s": BATCH * 1e3 / nat_ms,
        "swin_img_s": BATCH * 1e3 / swin_ms,
        # the pair row's ratio is NAT latency / Swin latency: its inverse is the throughput ratio
        "ratio": 1 / row["ratio"],
        "ratio_low": 1 / row["ratio_ci_high"],
        "ratio_high": 1 / row["ratio_ci_low"],
        "processes": row["repeats"],
        "threads": row["threads"],
        "allocator": row["allocator"],
    }


@pytest.mark.parametrize("nat,swin,dtype", PAIRS, ids=[":".join(p) for p in PAIRS])
def test_nat_vs_swin_throughput(benchmark, nat, swin, dtype):
    row = benchmark.pedantic(lambda: nat_vs_swin(nat, swin, dtype), rounds=1, iterations=1)
    benchmark.group = "nat / swin"
    benchmark.extra_info.update(row)
    ROWS.append(row)


def test_zz_nat_vs_swin_table(capsys):
    if not ROWS:
        pytest.skip("no NAT / Swin pair ran in this session")
    lines = [
        f"{'NAT':>10} {'Swin':>11} {'dtype':>9} {'NAT img/s':>9} {'Swin img/s':>10} {'NAT/Swin':>8} {'95 % interval':>14}"
    ]
    for r in ROWS:
        lines.append(
            f"{r['nat']:>10} {r['swin']:>11} {r['dtype']:>9} {r['nat_img_s']:>9.2f} {r['swin_img_s']:>10.2f} "
            f"{r['ratio']:>8.3f} {r['ratio_low']:>6.3f}..{r['ratio_high']:.3f} ({r['processes']} processes)"
        )
    with capsys.disabled():
        print(
            f"\nNAT / Swin CPU throughput, batch {BATCH}, 224px, {ROWS[0]['threads']} threads, interleaved "
            f"pairs in fresh processes ({ROWS[0]['allocator']})"
        )
        print("\n".join(lines))
