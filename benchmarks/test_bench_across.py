"""Do one sweep's intervals hold another sweep's values? Reruns of one preset on one machine, side by side.

    python -m benchmarks.test_bench_across out/a1 out/a2 out/a3     # e.g. three `natbench reproduce` runs

For every case ok in all the sweeps: how often sweep i's latency (peak memory, pair ratio) interval holds sweep
j's median (ordered pairs i != j; a calibrated 95 % interval holds another run's value ~83 % of the time,
target >= 70 %), and each case's interval width against the 95 % spread of its medians (3.92 SD on the log
scale, what a calibrated interval spans; with 3 sweeps that SD has 2 degrees of freedom: read the median over
cases). For every claim judged in all of them: how often one sweep's band holds another's measured value, and
the verdicts that differ: an edge (INCONCLUSIVE in some, one side of the tolerance in the others), a flip (PASS
in one, FAIL in another), an ERROR in some sweep (natbench failed) or a SKIP in some only: the targets for the
last three are none.
Exit 0 when the targets hold, 1 when not, 2 on bad input.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from natbench.measure.drift import Z95  # the rows' intervals are 95 % intervals

COVERAGE_TARGET = 0.70

# what a row's value and interval are, by kind of row
MEASURES = {
    "latency": ("latency_ms", "latency_ci_low_ms", "latency_ci_high_ms"),
    "peak memory": ("peak_mem_bytes", "peak_mem_ci_low_bytes", "peak_mem_ci_high_bytes"),
    "pair ratio": ("ratio", "ratio_ci_low", "ratio_ci_high"),
}


@dataclass
class Coverage:
    """Ordered pairs (i, j) of sweeps where sweep i's interval holds sweep j's value, over items."""

    held: int = 0
    pairs: int = 0
    widths: list[float] = field(default_factory=list)  # interval width / 95 % spread of the values, per item
    missed: list[tuple[str, int, int]] = field(default_factory=list)  # (item, held, pairs) when not all held
    varying_only: bool = False  # leave out items whose value is the same in every sweep (params, MACs)

    def add(self, name: str, values: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> None:
        if self.varying_only and len(set(values)) == 1:
            return
        held = sum(lows[i] <= values[j] <= highs[i] for i, j in itertools.permutations(range(len(values)), 2))
        pairs = len(values) * (len(values) - 1)
        self.held += held
        self.pairs += pairs
        if held < pairs:
            self.missed.append((name, held, pairs))
        logs = [math.log(v) for v in values]
        spread = 2 * Z95 * statistics.stdev(logs)
        if spread > 0:
            self.widths.append(statistics.median(math.log(h / lo) for lo, h in zip(lows, highs)) / spread)

    @property
    def share(self) -> float | None:
        return self.held / self.pairs if self.pairs else None

    def line(self, what: str) -> str:
        if not self.pairs:
            return f"{what}: nothing ok in every sweep"
        width = (
            f"width / 95 % spread of the values: median {statistics.median(self.widths):.2f} "
            f"(quartiles {_quartiles(self.widths)}) over {len(self.widths)}"
            if self.widths
            else "no spread"
        )
        return f"{what}: held {self.held}/{self.pairs} = {self.share:.0%} (target >= 70 %); {width}"


def _quartiles(values: list[float]) -> str:
    if len(values) < 2:
        return "-"
    q1, _, q3 = statistics.quantiles(values, n=4)
    return f"{q1:.2f}..{q3:.2f}"


def _number(value) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    )


def rows_coverage(sweeps: Sequence[Sequence[dict]]) -> dict[str, Coverage]:
    """Coverage per measure over the cases ok in every sweep (rows as natbench.results.load gives them)."""
    by_case = [{r["case_id"]: r for r in rows} for rows in sweeps]
    machines = {r.get("machine") for rows in sweeps for r in rows if r.get("status") == "ok"}
    if len(machines) > 1:
        raise ValueError(f"the sweeps were measured on different machines: {sorted(map(str, machines))}")
    out = {name: Coverage() for name in MEASURES}
    for case in sorted(set.intersection(*(set(c) for c in by_case))):
        rows = [c[case] for c in by_case]
        if any(r.get("status") != "ok" for r in rows):
            continue
        for name, (value, low, high) in MEASURES.items():
            got = [(r.get(value), r.get(low), r.get(high)) for r in rows]
            if all(_number(v) and _number(lo) and _number(h) and lo <= v <= h for v, lo, h in got):
                out[name].add(case, *zip(*got))
    return out


def claims_agreement(sweeps: Sequence[Sequence[dict]]) -> tuple[Coverage, int, list[tuple[str, list[str]]]]:
    """(coverage of the claims' bands, claims judged in every sweep, [(claim, verdicts)] that differ)."""
    by_id = [{c["id"]: c for c in claims} for claims in sweeps]
    bands = Coverage(varying_only=True)
    differ = []
    judged = 0
    for cid in sorted(set.intersection(*(set(c) for c in by_id))):
        got = [c[cid] for c in by_id]
        verdicts = [c["verdict"] for c in got]
        if all(v == "SKIP" for v in verdicts):
            continue
        judged += 1
        if len(set(verdicts)) > 1:
            differ.append((cid, verdicts))
        values = [c.get("measured") for c in got]
        limits = [c.get("band") or [None, None] for c in got]
        if all(_number(v) and _number(lo) and _number(h) for v, (lo, h) in zip(values, limits)):
            bands.add(cid, values, [lo for lo, _ in limits], [h for _, h in limits])
    return bands, judged, differ


def difference(verdicts: Sequence[str]) -> str:
    """How a claim's differing verdicts differ: "flip" (PASS and FAIL), "error" (natbench failed in a
    sweep), "skip" (judged in some sweeps only), else "edge" (INCONCLUSIVE in some: the band straddled the
    tolerance there)."""
    if "PASS" in verdicts and "FAIL" in verdicts:
        return "flip"
    if "ERROR" in verdicts:
        return "error"
    return "skip" if "SKIP" in verdicts else "edge"


def _load(directory: Path) -> tuple[list[dict], list[dict]]:
    from natbench import results

    if not results.has_rows(directory):
        raise ValueError(f"{directory}: no natbench rows (a sweep's --out directory)")
    rows = results.load(directory).to_dict("records")
    path = directory / "claims.json"
    claims = json.loads(path.read_text()) if path.is_file() else []
    return rows, claims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", nargs="+", type=Path, help="two or more sweeps' --out directories")
    parser.add_argument(
        "--show", type=int, default=10, help="cases listed per measure, least often held first (default 10)"
    )
    args = parser.parse_args(argv)
    if len(args.results) < 2:
        parser.error("give two or more result directories")
    try:
        loaded = [_load(d) for d in args.results]
        coverage = rows_coverage([rows for rows, _ in loaded])
    except ValueError as exc:
        parser.error(str(exc))
    met = True
    print(f"{len(args.results)} sweeps: {', '.join(map(str, args.results))}")
    for name, cov in coverage.items():
        print(cov.line(name))
        for item, held, pairs in sorted(cov.missed, key=lambda m: m[1] / m[2])[: args.show]:
            print(f"  {held}/{pairs}  {item}")
        met &= cov.share is None or cov.share >= COVERAGE_TARGET
    if all(claims for _, claims in loaded):
        bands, judged, differ = claims_agreement([claims for _, claims in loaded])
        print(bands.line("claims' bands (claims whose value varied)"))
        kinds = [difference(verdicts) for _, verdicts in differ]
        print(
            f"verdicts: {judged - len(differ)} of {judged} claims the same in every sweep; "
            f"{kinds.count('edge')} at an edge, {kinds.count('flip')} PASS <-> FAIL (target 0), "
            f"{kinds.count('error')} ERROR in some sweeps, {kinds.count('skip')} SKIP in some (targets 0)"
        )
        for (cid, verdicts), kind in zip(differ, kinds):
            print(f"  {kind:<5}  {' / '.join(verdicts)}  {cid}")
        met &= not {"flip", "error", "skip"} & set(kinds)
    else:
        print("verdicts: a sweep has no claims.json (natbench reproduce writes one)")
    print(f"targets {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
