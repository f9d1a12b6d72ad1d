"""`natbench compare BASE NEW`: per-case ratios of two result sets; a regression must be real and large.

A case regresses when NEW is worse than BASE by more than the threshold (ratio of medians; 5 % by default, so
that a 10 % slowdown is caught although noise scatters its measured ratio around 1.10) AND a one-sided
Mann-Whitney U test (scipy.stats.mannwhitneyu) over the per-process values (`latency_process_ms`,
`peak_mem_process_bytes`: one value per fresh process) says NEW is worse at level alpha. Rows written before
per-process values existed fall back to their within-run samples (latency), or to the threshold alone, and
the line says so. Exit codes: 0 no regression, 1 regression(s), 2 bad input or no case comparable.

Between runs (between_runs): with 20 or more cases, a change must also clear a bar set by the runs' own scatter
and the number of cases, so that unchanged code flags a case with probability about alpha; the header says the
smallest change of one case that then shows. `--per-case` judges each case on its own test instead.

Several baselines (`natbench compare MON TUE WED TODAY`, oldest first): each case's baseline pools the
per-process values of its runs on NEW's machine and takes the median of their medians, so that the test sees
the baseline's between-run noise; a regression (improvement) must also be beyond the worst (best) baseline run,
and the bar weighs the case's own offsets between those runs (case_offsets, moderated toward the common scatter:
case_tau). Some cases move further between sweeps than others (7 cpu-quick sweeps on the VM: SD 20 % for the
gather reference NA at 14x14, 6 % for the median case). One baseline cannot show a case's own noise.

Rows of short runs carry the machine's drift floor (`latency_drift_cv`, from `natbench noise`): two such runs
differ by it even when nothing changed, so their change must also exceed 1.96 x the floors' root sum of squares.

The sentinel: rows timed with it (natbench.measure.timer) carry each process's latency relative to a matmul
run between its timed blocks (`latency_rel_process`). Where both rows carry it from the same sentinel,
`--normalize auto` (the default) judges a case on those values put back at BASE's sentinel speed (at_sentinel):
each block and its sentinel met the same moment of the machine, so a busy spell cancels per block. It cancels
fully only for work slowed as a matmul is (the fused NA kernel slows about twice as much, shifted window
attention on large maps less); what it leaves between runs is in the runs' scatter that the bar below measures.
On the 2-core VM (a busy spell): a case doing 10 % more matmuls, in runs one after the other, was flagged 10/10
in three sets relative to the sentinel (A/A 0/10) and 5/10 by the calibrations (A/A 2/10); four cpu-quick sweeps
of the same measurement code compared both ways (12 comparisons, with the bar) flagged one case, NA at 336x336, 14 % slower raw in one
sweep, both ways, relative to the sentinel, and none by the calibrations, which let a change of one case show
only beyond 74 % (median case) against 36 %. `--normalize calibrations` judges as below, `off` raw times. The
line of a case judged on relative times gives the raw values and the factor the machine's speed accounted for.

Machine drift: every process times two calibration workloads, a matmul (`calib_process_ms`) and a copy from
DRAM (`calib_bw_process_ms`). When the two sets' readings of one differ (Mann-Whitney U over all their
processes at level alpha), the machine itself ran at another speed. A case's time mixes compute and memory
traffic, so the machine's effect on it lies between the two factors: NEW's latencies (and throughputs) are
divided by the factor between them nearest to the case's own change: a regression must remain after the
larger, an improvement after the smaller (`--normalize calibrations`, and `auto` for rows without a sentinel). The
factors are printed. The same holds per case: where the calibrations read in a case's own processes moved
(a busy spell met that case's processes more than the rest), their factors widen the case's range. Each of
the two is tested at alpha, so about 1 case in 10 gets a range by chance; a range only ever excuses a change
(the verdict needs it to remain after the range's far end), and in `natbench ab` a new version that slowed the
calibration itself would excuse its own slowdown up to that factor.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from natbench.measure.drift import Z95
from natbench.results import CASE_PARAMS, RESULTS_FILE, has_rows

DESCRIBE = ("kind", *CASE_PARAMS)
ALPHA = 0.05
THRESHOLD = 0.05
NORMALIZE = ("auto", "calibrations", "off")
MACHINE_KEYS = ("machine", "device_name", "threads")
SENTINEL_TEST = "relative to the sentinel"
CALIBRATION_COLUMNS = ("calib_process_ms", "calib_bw_process_ms")  # per process: matmul, DRAM copy


@dataclass(frozen=True)
class Metric:
    name: str
    column: str
    per_process: str | None
    unit: str
    higher_is_worse: bool


METRICS = {
    "latency": Metric("latency", "latency_ms", "latency_process_ms", "ms", True),
    "memory": Metric("memory", "peak_mem_bytes", "peak_mem_process_bytes", "bytes", True),
    "throughput": Metric("throughput", "throughput", "latency_process_ms", "img/s", False),
}


@dataclass
class CaseDelta:
    case_id: str
    describe: str
    base: float
    new: float
    ratio: float  # NEW / BASE of the metric's medians
    p_value: float | None  # one-sided Mann-Whitney U, NEW worse than BASE (None: no test possible)
    test: str  # what the verdict rests on
    base_n: int
    new_n: int
    verdict: str  # regression | improvement | unchanged
    busy: bool = False  # either row was measured on a busy machine (loadavg above its CPUs)
    machine_factor: float | None = None  # NEW's times were divided by this (machine drift), if at all
    base_runs: int = 1  # baseline runs pooled for this case
    # log(NEW / BASE) of the values' geometric means, its standard error and Welch degrees of freedom (None
    # without a spread): what between_runs weighs against the runs' scatter
    log_change: float | None = None
    change_se: float | None = None
    change_df: float | None = None
    within_scatter: bool = False  # beyond the threshold and the test, but not beyond the cases' scatter
    # this case's own offset between baseline runs (variance of log values, its degrees of freedom): see
    # case_offsets; None with one baseline run
    run_var: float | None = None
    run_df: int | None = None


@dataclass
class Comparison:
    base: str
    new: str
    metric: str
    threshold: float
    alpha: float
    cases: list[CaseDelta]
    only_in_base: list[str]
    only_in_new: list[str]
    not_comparable: list[dict[str, Any]]  # in both, but no verdict possible: each with its reason
    drift: dict[str, Any] | None = None  # calibration workload NEW / BASE, and whether it was applied
    normalize: str = "auto"  # "off": raw times, no machine drift taken out (sweep-wide or per case)
    # the runs' scatter a change must exceed, or why there is no bar (see between_runs)
    scatter: dict[str, Any] | None = None

    @property
    def regressions(self) -> list[CaseDelta]:
        return [c for c in self.cases if c.verdict == "regression"]

    @property
    def improvements(self) -> list[CaseDelta]:
        return [c for c in self.cases if c.verdict == "improvement"]

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return 1
        return 0 if self.cases else 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "new": self.new,
            "metric": self.metric,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "exit_code": self.exit_code,
            "regressions": [asdict(c) for c in self.regressions],
            "improvements": [asdict(c) for c in self.improvements],
            "unchanged": [asdict(c) for c in self.cases if c.verdict == "unchanged"],
            "only_in_base": self.only_in_base,
            "only_in_new": self.only_in_new,
            "not_comparable": self.not_comparable,
            "drift": self.drift,
            "normalize": self.normalize,
            "scatter": self.scatter,
        }


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _list(value) -> list[float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if value is None or isinstance(value, float) or not hasattr(value, "__iter__"):
        return []
    out = [_number(v) for v in value]
    return [v for v in out if v is not None]


def _load(directory: str | Path):
    from natbench.results import load

    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(
            f"results directory {path} does not exist; pass a directory made by natbench sweep/run"
        )
    if not has_rows(path):
        raise FileNotFoundError(
            f"{path} has no {RESULTS_FILE} nor rows/*.jsonl; pass a directory made by natbench sweep/run"
        )
    frame = load(path)
    if frame.empty:
        raise ValueError(f"{path} has no rows")
    rows = frame.to_dict("records")
    return {r["case_id"]: r for r in rows if r.get("kind") != "pair"}


def _describe(row: dict[str, Any]) -> str:
    parts = []
    for col in DESCRIBE:
        value = row.get(col)
        if _missing(value):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(f"{col}={value}")
    return " ".join(parts)


def machine_mismatch(b: dict[str, Any], n: dict[str, Any]) -> list[str]:
    """What differs between the machines of two rows (missing on both sides is no difference)."""
    out = []
    for key in MACHINE_KEYS:
        bv, nv = b.get(key), n.get(key)
        if _missing(bv) and _missing(nv):
            continue
        if key == "machine" and (_missing(bv) or _missing(nv)):
            continue  # older rows have no machine column: device_name and threads decide
        if _missing(bv) or _missing(nv) or bv != nv:
            out.append(f"{key} {bv} vs {nv}")
    return out


def _values(row: dict[str, Any], metric: Metric) -> tuple[float | None, list[float], str]:
    """(point, per-unit values, what the values are) of one row for a metric."""
    point = _number(row.get(metric.column))
    per = _list(row.get(metric.per_process))
    kind = "processes"
    if metric.name == "latency" and len(per) < 2:
        per, kind = _list(row.get("latency_samples_ms")), "within-run samples"
    if metric.name == "throughput":
        batch = _number(row.get("batch")) or 1.0
        per = [batch * 1e3 / v for v in per if v > 0]
        if len(per) < 2:
            per = [batch * 1e3 / v for v in _list(row.get("latency_samples_ms")) if v > 0]
            kind = "within-run samples"
    if len(per) < 2:
        per, kind = [], "none"
    return point, per, kind


def _workload_drift(base_rows, new_rows, column: str, alpha: float) -> dict[str, Any] | None:
    from scipy.stats import mannwhitneyu

    def values(rows):
        return [v for r in rows.values() if r.get("status") == "ok" for v in _list(r.get(column))]

    b, n = values(base_rows), values(new_rows)
    if len(b) < 5 or len(n) < 5:
        return None
    factor = float(np.median(n) / np.median(b))
    p = float(mannwhitneyu(n, b, alternative="two-sided").pvalue)
    return {"factor": factor, "p_value": p, "base_n": len(b), "new_n": len(n), "significant": p <= alpha}


def machine_drift(base_rows, new_rows, alpha: float = ALPHA) -> dict[str, Any] | None:
    """NEW / BASE of the calibration workloads' medians over every ok row's processes, each with a two-sided
    Mann-Whitney p: the matmul ("compute": its keys at the top level) and, where rows have it, the DRAM copy
    ("memory"). None when the matmul has fewer than 5 values on either side.

    A case's time is some mix of compute and memory traffic, so the machine's effect on it lies between the
    two significant factors (1 where a workload did not move): `low` and `high`. A case's NEW times are
    divided by the factor in [low, high] nearest to its own change: a regression must remain after dividing
    by `high`, an improvement after dividing by `low`, and a change within [low, high] is the machine's."""
    compute = _workload_drift(base_rows, new_rows, "calib_process_ms", alpha)
    if compute is None:
        return None
    memory = _workload_drift(base_rows, new_rows, "calib_bw_process_ms", alpha)
    factors = [compute["factor"] if compute["significant"] else 1.0]
    if memory is not None:
        factors.append(memory["factor"] if memory["significant"] else 1.0)
    significant = compute["significant"] or bool(memory and memory["significant"])
    return {
        **compute,  # the matmul's factor, p_value, base_n, new_n at the top level, as rows before the copy
        "compute": compute,
        "memory": memory,
        "significant": significant,
        "low": min(factors),
        "high": max(factors),
    }


def case_drift(base: dict[str, Any], new: dict[str, Any], alpha: float = ALPHA) -> list[float]:
    """NEW / BASE of the calibration workloads read in this case's own processes, where they moved
    (two-sided Mann-Whitney at alpha; at least 5 processes a side). A busy spell that met most of one case's
    processes (and few of the others') shows here, not in the sweep-wide reading of machine_drift."""
    out = []
    for column in CALIBRATION_COLUMNS:
        got = _workload_drift({0: base}, {0: new}, column, alpha)
        if got is not None and got["significant"]:
            out.append(got["factor"])
    return out


def sentinel_speed(base: dict[str, Any], new: dict[str, Any]) -> float | None:
    """The sentinel ms both rows' relative latencies are put back at (BASE's median reading), when both rows
    carry them from the same sentinel (at least 2 processes each); else None."""
    if _missing(base.get("sentinel")) or base.get("sentinel") != new.get("sentinel"):
        return None
    if min(len(_list(r.get("latency_rel_process"))) for r in (base, new)) < 2:
        return None
    readings = _list(base.get("sentinel_process_ms"))
    return float(np.median(readings)) if readings else None


def at_sentinel(row: dict[str, Any], speed: float, metric: Metric) -> dict[str, Any]:
    """A row whose latencies are its processes' relative latencies x `speed` (ms of a sentinel call): what
    each process would have taken with the machine at that speed; throughput and baseline points follow."""
    out = dict(row)
    rel = _list(row.get("latency_rel_process"))
    out["latency_process_ms"] = [v * speed for v in rel]
    out["latency_samples_ms"] = None
    point = _number(row.get("latency_rel"))
    out["latency_ms"] = (point if point is not None else float(np.median(rel))) * speed
    batch = _number(row.get("batch")) or 1.0
    if _number(row.get("throughput")) is not None:
        out["throughput"] = batch * 1e3 / out["latency_ms"]
    if row.get("base_rel_points"):
        ms = [v * speed for v in row["base_rel_points"]]
        out["base_points"] = ms if metric.name == "latency" else [batch * 1e3 / v for v in ms]
    return out


def _scaled(row: dict[str, Any], factor: float) -> dict[str, Any]:
    """NEW's latency columns divided by the machine's drift factor (throughput multiplied)."""
    out = dict(row)
    for col in ("latency_ms",):
        if _number(out.get(col)) is not None:
            out[col] = _number(out[col]) / factor
    for col in ("latency_process_ms", "latency_samples_ms"):
        vals = _list(out.get(col))
        if vals:
            out[col] = [v / factor for v in vals]
    if _number(out.get("throughput")) is not None:
        out["throughput"] = _number(out["throughput"]) * factor
    return out


RUN_COLUMNS = ("latency_process_ms", "latency_rel_process", "peak_mem_process_bytes")

POOLED = (
    "latency_rel_process",
    "sentinel_process_ms",
    "latency_process_ms",
    "peak_mem_process_bytes",
    "latency_samples_ms",
    "calib_process_ms",
    "calib_bw_process_ms",
)


def pool(rows: list[dict[str, Any]], metric: Metric) -> dict[str, Any]:
    """One baseline row from a case's rows in several baseline runs (oldest first): their per-process values
    pooled, the median of their points, and each run's point (`base_points`), so that the between-run
    noise of the baseline is in the test and in the rule that NEW must be worse than every baseline run."""
    ok = [r for r in rows if r.get("status") == "ok"]
    if len(rows) == 1 or not ok:
        return rows[-1]
    out = dict(ok[-1])
    for col in POOLED:
        out[col] = [v for r in ok for v in _list(r.get(col))] or None
    points = [p for p in (_number(r.get(metric.column)) for r in ok) if p is not None]
    if points:
        out[metric.column] = float(np.median(points))
    out["base_points"] = points
    out["base_run_values"] = {col: [_list(r.get(col)) for r in ok] for col in RUN_COLUMNS}
    rel = [_number(r.get("latency_rel")) for r in ok]
    # relative times pool only when every run has them, from one sentinel
    if len({r.get("sentinel") for r in ok}) == 1 and all(v is not None for v in rel):
        out["base_rel_points"] = rel
        out["latency_rel"] = float(np.median(rel))
    else:
        out["latency_rel_process"] = out["sentinel_process_ms"] = out["base_rel_points"] = None
    out["busy"] = any(r.get("busy") is True for r in ok)
    floors = [f for f in (_number(r.get("latency_drift_cv")) for r in ok) if f is not None]
    out["latency_drift_cv"] = max(floors, default=None)  # the widest any baseline run carried
    return out


def case_offsets(base: dict[str, Any], column: str) -> dict[str, float] | None:
    """How far this case's baseline runs sit apart beyond their processes' noise: the variance of the runs'
    mean log values less the mean squared standard error of those means (floored at 0), on k - 1 degrees of
    freedom; None with fewer than 2 runs of at least 2 positive values. A sweep spreads a case's processes
    over its minutes, but some cases move further from one sweep to the next: over 7 cpu-quick sweeps on the
    VM, the gather reference NA at 14x14 by 20 % (SD), the median case by 6 %."""
    runs = [
        np.log([v for v in vals if v > 0]) for vals in (base.get("base_run_values") or {}).get(column, [])
    ]
    runs = [r for r in runs if len(r) >= 2]
    if len(runs) < 2:
        return None
    means = np.array([r.mean() for r in runs])
    noise = float(np.mean([r.var(ddof=1) / len(r) for r in runs]))
    return {"var": max(0.0, float(means.var(ddof=1)) - noise), "df": len(runs) - 1}


def _with_offsets(case: CaseDelta, base: dict[str, Any], column: str) -> CaseDelta:
    got = case_offsets(base, column)
    return case if got is None else replace(case, run_var=got["var"], run_df=got["df"])


def judge(
    base: dict[str, Any], new: dict[str, Any], metric: Metric, threshold: float, alpha: float = ALPHA
) -> CaseDelta | str:
    """A CaseDelta for two rows of one case, or why they cannot be compared."""
    from scipy.stats import mannwhitneyu

    if base.get("status") != "ok" or new.get("status") != "ok":
        return f"not ok in both: base {base.get('status')}, new {new.get('status')}"
    machine = machine_mismatch(base, new)
    if machine:
        return "measured on different machines: " + ", ".join(machine)
    methods = [r.get("memory_method") for r in (base, new)]
    if metric.name == "memory" and not any(_missing(m) for m in methods) and methods[0] != methods[1]:
        if any(str(m).startswith("not measured") for m in methods):
            return f"peak memory not measured: base {methods[0]!r}, new {methods[1]!r}"
        return f"peak memory read differently: base {methods[0]!r}, new {methods[1]!r}"
    b, b_vals, b_kind = _values(base, metric)
    n, n_vals, n_kind = _values(new, metric)
    if not b or not n or b <= 0 or n <= 0:
        return f"no {metric.column} in {'base' if not b else 'new'}"
    ratio = n / b
    # rows whose interval carries the machine's drift floor (a short `natbench run`): two such runs differ by
    # the floors of both even when nothing changed, so the change must exceed that too
    floor = math.hypot(*(_number(r.get("latency_drift_cv")) or 0.0 for r in (base, new)))
    if metric.name != "memory" and floor > 0:
        threshold = max(threshold, math.exp(Z95 * floor) - 1)

    def beyond(r: float) -> tuple[bool, bool]:  # (worse, better) by more than the threshold
        if metric.higher_is_worse:
            return r > 1 + threshold, r < 1 / (1 + threshold)
        return r < 1 / (1 + threshold), r > 1 + threshold

    worse, better = beyond(ratio)
    points = [p for p in base.get("base_points") or [] if p > 0]
    if len(points) > 1:
        # and beyond every baseline run: the worst for a regression, the best for an improvement
        high, low = max(points), min(points)
        worst, best = (high, low) if metric.higher_is_worse else (low, high)
        worse, better = worse and beyond(n / worst)[0], better and beyond(n / best)[1]
    p = None
    if b_vals and n_vals:
        side = "greater" if metric.higher_is_worse else "less"
        p = float(mannwhitneyu(n_vals, b_vals, alternative=side).pvalue)
        p_better = float(
            mannwhitneyu(n_vals, b_vals, alternative="less" if side == "greater" else "greater").pvalue
        )
        kinds = {b_kind, n_kind}
        test = f"Mann-Whitney U over {' / '.join(sorted(kinds))} ({len(b_vals)} vs {len(n_vals)})"
        if len(points) > 1:
            test += f", pooled over {len(points)} baseline runs, beyond each"
        if kinds != {"processes"}:
            test += ": old rows without per-process values, between-run noise not measured"
        if metric.name != "memory" and floor > 0:
            test += f"; rows carry a drift floor: change must exceed {threshold:.1%}"
        sig_worse, sig_better = p <= alpha + 1e-12, p_better <= alpha + 1e-12
        if (worse and not sig_worse) or (better and not sig_better):
            test += (
                f"; beyond the threshold but not significant ({len(b_vals)} vs {len(n_vals)} "
                f"{'/'.join(sorted(kinds))}): more processes (--repeats) might decide"
            )
    else:
        test = "threshold only: no per-process values or samples"
        if metric.name != "memory" and floor > 0:
            test += f" (raised to {threshold:.1%} by the rows' drift floor)"
        sig_worse = sig_better = True
    verdict = "regression" if worse and sig_worse else "improvement" if better and sig_better else "unchanged"
    busy = any(r.get("busy") is True for r in (base, new))
    return CaseDelta(
        new.get("case_id"),
        _describe(new),
        b,
        n,
        ratio,
        p,
        test,
        len(b_vals),
        len(n_vals),
        verdict,
        busy,
        base_runs=max(1, len(points)),
        **(log_change(b_vals, n_vals) if b_vals and n_vals else {}),
    )


def _selected(case_id: str, row: dict[str, Any], patterns: list[str]) -> bool:
    if not patterns:
        return True
    text = f"{case_id} {_describe(row)}"
    return any(fnmatch.fnmatch(case_id, p) if any(c in p for c in "*?[") else p in text for p in patterns)


def compare(
    base: str | Path,
    new: str | Path,
    threshold: float = THRESHOLD,
    metric: str = "latency",
    filters: list[str] | None = None,
    alpha: float = ALPHA,
    normalize: str = "auto",
    per_case: bool = False,
) -> Comparison:
    """Join result directories on case_id and judge every case in BASE and NEW (pair rows are left out).

    per_case: judge each case on its own test, without the bar the runs' scatter and the number of cases set
    (between_runs): about alpha x cases unchanged cases flag by chance, as asv's and pyperf's compares do.

    base: one results directory, or several (oldest first): then each case's baseline pools its rows from the
    runs measured on NEW's machine (see `pool`), and a change must also go beyond every baseline run.

    normalize: "auto" judges a case on its latency relative to the sentinel where both rows carry it from the
    same sentinel (at_sentinel) and otherwise as "calibrations", which divides NEW's times by the machine's
    drift when a calibration workload says it changed significantly (see machine_drift); "off" judges raw
    times (memory is never normalized)."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0 (a fraction, 0.1 = 10 %), got {threshold}")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {metric!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZE)}, got {normalize!r}")
    m = METRICS[metric]
    patterns = list(filters or [])
    bases = [base] if isinstance(base, (str, Path)) else list(base)
    if not bases:
        raise ValueError("compare needs at least one baseline results directory")
    base_sets = [{k: v for k, v in _load(b).items() if _selected(k, v, patterns)} for b in bases]
    new_rows = {k: v for k, v in _load(new).items() if _selected(k, v, patterns)}
    base_rows = {}
    for case_id in sorted(set().union(*base_sets)):
        rows = [s[case_id] for s in base_sets if case_id in s]
        n = new_rows.get(case_id)
        same = [r for r in rows if n is None or not machine_mismatch(r, n)]
        if m.name == "memory" and n is not None:  # memory read another way is not pooled in
            same = [r for r in same if r.get("memory_method") == n.get("memory_method")]
        base_rows[case_id] = pool(same or rows[-1:], m)
    if patterns and not base_rows and not new_rows:
        raise ValueError(f"--filter {' '.join(patterns)} matches no case in either result set")
    drift = machine_drift(base_rows, new_rows, alpha)
    ranges = normalize != "off" and metric != "memory"
    if drift is not None:
        drift["applied"] = bool(ranges and drift["significant"])
    cases, not_comparable = [], []
    for case_id in sorted(set(base_rows) & set(new_rows)):
        b, n = base_rows[case_id], new_rows[case_id]
        speed = sentinel_speed(b, n) if normalize == "auto" and metric != "memory" else None
        if speed is not None:
            got = _judge_at_sentinel(b, n, speed, m, threshold, alpha)
        else:
            got = _judge_in_range(b, n, m, threshold, alpha, drift, case_drift(b, n, alpha) if ranges else [])
        if isinstance(got, str):
            not_comparable.append(_reason(case_id, b, n, got))
        else:
            cases.append(got)
    scatter = between_runs(cases, alpha, drift if m.name != "memory" else None)  # speed moves no bytes
    if scatter is not None and scatter["applied"]:
        scatter["detectable"] = detectable(cases, scatter, alpha)
        if per_case:
            scatter.update(applied=False, why="--per-case: each case judged on its own test")
        else:
            cases = [_within_scatter(c, scatter, alpha) for c in cases]
    if drift is not None and cases and all(SENTINEL_TEST in c.test for c in cases):
        drift["applied"] = False  # every case was judged relative to its sentinel
    return Comparison(
        ", ".join(str(b) for b in bases),
        str(new),
        metric,
        threshold,
        alpha,
        cases,
        sorted(set(base_rows) - set(new_rows)),
        sorted(set(new_rows) - set(base_rows)),
        not_comparable,
        drift,
        normalize,
        scatter,
    )


SCATTER_MIN_CASES = 20  # fewer cases do not tell their scatter from their changes
MACHINE_MOVED = 0.05  # a calibration this much faster or slower: the machine ran at another speed
SCATTER_MAX_ALIKE = 0.2  # A/A sweeps on the VM: at most 4 of 61 cases (then) flagged one way before the bar


def log_change(base: list[float], new: list[float]) -> dict[str, float]:
    """log(NEW / BASE) of the positive values' geometric means, its standard error and Welch-Satterthwaite
    degrees of freedom; {} or the change alone where there is no spread."""
    b, n = (np.log([v for v in vals if v > 0]) for vals in (base, new))
    if len(b) < 2 or len(n) < 2:
        return {}
    change = float(n.mean() - b.mean())
    vb, vn = b.var(ddof=1) / len(b), n.var(ddof=1) / len(n)
    se = math.sqrt(vb + vn)
    if se <= 0:
        return {"log_change": change}
    df = (vb + vn) ** 2 / (vb**2 / (len(b) - 1) + vn**2 / (len(n) - 1))
    return {"log_change": change, "change_se": se, "change_df": df}


def machine_moved(drift: dict[str, Any] | None) -> float | None:
    """The larger calibration factor (matmul or DRAM copy, NEW / BASE) where it moved by MACHINE_MOVED or more
    (and significantly); else None."""
    if not drift or not drift.get("significant"):
        return None
    factors = [d["factor"] for d in (drift.get("compute"), drift.get("memory")) if d and d["significant"]]
    far = max(factors, key=lambda f: abs(math.log(f)), default=None)
    return far if far is not None and abs(math.log(far)) >= math.log1p(MACHINE_MOVED) else None


def between_runs(
    cases: list[CaseDelta], alpha: float, drift: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The runs' own scatter and the bar a change must clear (`applied`), or why there is none; None for a
    comparison of one case.

    One sweep's processes, spread over its minutes, still share that sweep, and 54 cases tested at one-sided
    alpha 0.05 flag about 3 by chance. A case's log change is its true change, plus the runs' offset for it
    (SD tau, the same for every case; with several baselines see case_tau), plus its processes' noise (its
    standard error). tau is what the cases' changes scatter beyond their standard errors: the robust SD of the
    changes (MAD about their median, scipy.stats.median_abs_deviation) squared, less their median squared
    standard error. A regression or improvement must then exceed, in units of sqrt(se^2 + tau^2), the Student t
    quantile at alpha / (2 x cases) with its Welch degrees of freedom: a comparison of unchanged code flags a
    case, either way, with probability about alpha. With more than SCATTER_MAX_ALIKE of the cases changed the
    same way on their own, they are a change (a kernel most cases share), not the runs' scatter, and would widen
    the bar that should flag them: tau is then 0 and the bar only counts the cases (and, with several
    baselines, each case's own offsets: case_tau). Unless the machine's own calibration workloads moved by
    MACHINE_MOVED or more too (`drift`, see machine_drift), which makes the machine the likelier cause: of 42
    comparisons among 7 cpu-quick sweeps, 12 met a shared change, and in each the machine's matmul or DRAM-copy
    calibration had moved by 10-16 %. No bar with fewer than SCATTER_MIN_CASES."""
    from scipy.stats import median_abs_deviation

    if len(cases) < 2:
        return None
    known = [c for c in cases if c.change_se is not None]
    if len(known) < SCATTER_MIN_CASES:
        why = f"{len(known)} case(s) with a spread, fewer than {SCATTER_MIN_CASES}, cannot show how the runs scatter"
        return {
            "applied": False,
            "why": why + "; the test sees only each case's processes",
            "cases": len(known),
        }
    alike = max(sum(c.verdict == v for c in cases) for v in ("regression", "improvement"))
    spread = float(median_abs_deviation([c.log_change for c in known], scale="normal"))
    noise = float(np.median([c.change_se for c in known]))
    tau = math.sqrt(max(0.0, spread**2 - noise**2))
    out = {"applied": True, "cases": len(known), "spread": spread, "noise": noise, "tau": tau, "alike": alike}
    if alike > SCATTER_MAX_ALIKE * len(cases):
        moved = machine_moved(drift)
        if moved is None:
            why = f"{alike} of {len(cases)} cases changed the same way on their own: a shared change, not counted"
            out.update(tau=0.0, why=why)
        else:
            out["why"] = (
                f"{alike} of {len(cases)} cases changed the same way on their own, and the machine's calibrations "
                f"moved by x{moved:.3f}: kept as the runs' scatter"
            )
    return out


def _bar(case: CaseDelta, scatter: dict[str, Any], alpha: float) -> float:
    """The t a case's change must exceed, in units of sqrt(se^2 + tau^2)."""
    from scipy.stats import t as student

    return float(student.isf(alpha / (2 * scatter["cases"]), case.change_df))


# the weight of the runs' common scatter against a case's own baseline runs, in degrees of freedom
PRIOR_DF = 2


def case_tau(case: CaseDelta, scatter: dict[str, Any]) -> float:
    """The SD of this case's log change that the runs, not its processes, explain: the runs' common tau, or,
    with several baseline runs, that moderated toward the case's own offsets between them (case_offsets):
    NEW is one more run (its offset counts once) against the mean of k baseline runs (1 / k of one). Never
    below the common tau: a few runs' offsets often read 0 (floored), and the bar's t quantile does not count
    the uncertainty of a case's own variance."""
    if case.run_var is None or not case.run_df:
        return scatter["tau"]
    own = (1 + 1 / max(case.base_runs, 1)) * case.run_var
    moderated = math.sqrt((PRIOR_DF * scatter["tau"] ** 2 + case.run_df * own) / (PRIOR_DF + case.run_df))
    return max(scatter["tau"], moderated)


def detectable(cases: list[CaseDelta], scatter: dict[str, Any], alpha: float) -> dict[str, float]:
    """The smallest change the bar lets through, over the cases: its median and lower quartile (fractions)."""
    need = [
        math.exp(_bar(c, scatter, alpha) * math.hypot(c.change_se, case_tau(c, scatter))) - 1
        for c in cases
        if c.change_se is not None
    ]
    return {"median": float(np.median(need)), "quartile": float(np.percentile(need, 25))}


def _within_scatter(case: CaseDelta, scatter: dict[str, Any], alpha: float) -> CaseDelta:
    if case.verdict == "unchanged" or case.change_se is None:
        return case
    tau = case_tau(case, scatter)
    total = case.log_change / math.hypot(case.change_se, tau)
    bar = _bar(case, scatter, alpha)
    if abs(total) > bar:
        return case
    whose = "the runs'" if case.run_var is None else f"its {case.base_runs} baseline runs' and the runs'"
    test = (
        f"{case.test}; within the runs' scatter (t {abs(total):.1f} with {whose} {tau:.1%}; "
        f"{'an' if case.verdict == 'improvement' else 'a'} {case.verdict} must exceed {bar:.1f})"
    )
    return replace(case, verdict="unchanged", test=test, within_scatter=True)


def _reason(case_id: str, base: dict[str, Any], new: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "base_status": base.get("status"),
        "new_status": new.get("status"),
        "reason": reason,
        "describe": _describe(new),
    }


def _judge_in_range(
    base: dict[str, Any],
    new: dict[str, Any],
    metric: Metric,
    threshold: float,
    alpha: float,
    drift: dict[str, Any] | None,
    local: list[float],
) -> CaseDelta | str:
    """judge() with NEW's times divided by the machine's share of the case's change: the factor nearest to it in
    the sweep-wide range (where applied) widened by the case's own calibration factors (`local`)."""
    span = (drift["low"], drift["high"]) if drift is not None and drift["applied"] else None
    if local:
        low, high = span or (1.0, 1.0)
        span = (min(low, *local), max(high, *local))
    got = judge(base, new, metric, threshold, alpha)
    if isinstance(got, str):
        return got
    got = _with_offsets(got, base, metric.per_process or metric.column)
    if span is None:
        return got
    times = got.ratio if metric.higher_is_worse else 1 / got.ratio
    factor = min(max(times, span[0]), span[1])
    scaled = judge(base, _scaled(new, factor), metric, threshold, alpha)
    got = replace(scaled, machine_factor=factor, run_var=got.run_var, run_df=got.run_df)
    if local:
        got.test += (
            f"; its own processes' calibrations read new/base {' and '.join(f'{f:.3f}' for f in local)}"
        )
    return got


def _judge_at_sentinel(
    base: dict[str, Any], new: dict[str, Any], speed: float, metric: Metric, threshold: float, alpha: float
) -> CaseDelta | str:
    """judge() on both rows' relative latencies put back at BASE's sentinel speed; the line keeps the raw
    medians and names the factor the machine's speed accounted for."""
    raw = judge(base, new, metric, threshold, alpha)
    if isinstance(raw, str):
        return raw
    got = judge(at_sentinel(base, speed, metric), at_sentinel(new, speed, metric), metric, threshold, alpha)
    if isinstance(got, str):
        return got
    times = raw.ratio / got.ratio if metric.higher_is_worse else got.ratio / raw.ratio
    got.test += (
        f", {SENTINEL_TEST}, at base's sentinel speed (raw: {_fmt(raw.base, metric.name)} -> "
        f"{_fmt(raw.new, metric.name)}, ratio {raw.ratio:.3f}; the machine's speed accounted for x{times:.3f})"
    )
    return _with_offsets(replace(got, machine_factor=times), base, "latency_rel_process")


def _fmt(value: float, metric: str) -> str:
    return f"{value / 2**20:.2f} MiB" if metric == "memory" else f"{value:.4g}"


def format_text(result: Comparison) -> str:
    m = METRICS[result.metric]
    lines = [
        f"base: {result.base}",
        f"new:  {result.new}",
        f"metric: {result.metric} ({m.column}); regression = worse by > {result.threshold:.0%} and "
        f"one-sided Mann-Whitney p <= {result.alpha:g}",
    ]
    d = result.drift
    relative = sum(SENTINEL_TEST in c.test for c in result.cases)
    if result.cases and relative == len(result.cases):
        d = None  # every case was judged relative to its sentinel: the drift readings played no part
    elif d is None:
        lines.append("machine drift: not measured (rows without calibration values)")
    if d is not None:
        parts = [("matmul", d)] + ([("DRAM copy", d["memory"])] if d.get("memory") else [])
        readings = "; ".join(
            f"{name} new/base = {w['factor']:.3f} (Mann-Whitney p = {w['p_value']:.3g}, {w['base_n']} vs "
            f"{w['new_n']} processes)"
            for name, w in parts
        )
        if d.get("applied"):
            how = (
                f"each case's new times divided by the factor in [{d['low']:.3f}, {d['high']:.3f}] nearest "
                "to its own change before judging"
                if d["low"] != d["high"]
                else f"new times divided by {d['high']:.3f} before judging"
            )
        else:
            how = "not applied"
        lines.append(f"machine drift: {readings}; {how}")
        if result.normalize != "off" and result.metric != "memory":
            lines.append(
                "  per case, the calibrations read in its own processes widen that range (or set one) where "
                "they moved (the case's line names them)"
            )
    sc = result.scatter
    if sc is not None and sc["applied"]:
        within = sum(c.within_scatter for c in result.cases)
        lines.append(
            f"between runs: the {sc['cases']} cases' log changes scatter with a robust SD of {sc['spread']:.1%}, "
            f"their processes' noise {sc['noise']:.1%} (median): the runs add {sc['tau']:.1%} to each case"
            + (
                ", more to a case whose baseline runs scatter more"
                if any(c.run_var for c in result.cases)
                else ""
            )
            + (f" ({sc['why']})" if sc.get("why") else "")
            + f"; a change must exceed the t bar at alpha / (2 x {sc['cases']} cases); {within} case(s) within "
            "the runs' scatter"
        )
    elif sc is not None:
        lines.append(f"between runs: {sc['why']}")
    if sc is not None and sc.get("detectable"):
        d = sc["detectable"]
        lines.append(
            f"  with that bar a change of one case shows beyond {d['median']:.0%} (median case; the quietest "
            f"quarter beyond {d['quartile']:.0%}); more processes (--repeats), several baselines or natbench ab "
            "see less" + (" (the bar is off: --per-case)" if not sc["applied"] else "")
        )
    if relative:
        lines.append(
            f"sentinel: {relative} of {len(result.cases)} case(s) judged on their processes' times relative to "
            "the sentinel timed between their timed blocks, at base's sentinel speed (their line gives the raw "
            "values)"
        )
    lines += ["", f"{'verdict':<12} {'ratio':>7} {'p':>6} {'base':>11} {'new':>11}  case"]
    for c in sorted(result.cases, key=lambda c: -c.ratio if m.higher_is_worse else c.ratio):
        p = "-" if c.p_value is None else f"{c.p_value:.3f}"
        lines.append(
            f"{c.verdict:<12} {c.ratio:>7.3f} {p:>6} {_fmt(c.base, result.metric):>11} "
            f"{_fmt(c.new, result.metric):>11}  {c.case_id} [{c.test}]"
            + (" (busy machine)" if c.busy else "")
        )
    if not result.cases:
        lines.append("(nothing comparable: see the reasons below)")
    for title, ids in (("only in base", result.only_in_base), ("only in new", result.only_in_new)):
        if ids:
            lines += ["", f"{title} ({len(ids)}):"] + [f"  {i}" for i in ids]
    if result.not_comparable:
        lines += ["", f"not comparable ({len(result.not_comparable)}):"]
        lines += [f"  {d['case_id']}: {d['reason']}" for d in result.not_comparable]
    lines += [
        "",
        f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s), "
        f"{len(result.cases) - len(result.regressions) - len(result.improvements)} unchanged, "
        f"{len(result.not_comparable)} not comparable",
    ]
    return "\n".join(lines)


def show(
    result: Comparison, as_json: bool = False, title: str | None = None, notes: dict[str, str] | None = None
) -> None:
    """Print a comparison: as JSON (with `notes` as keys), or as text under an optional title line, the notes'
    texts after it."""
    if as_json:
        print(json.dumps({**result.to_dict(), **(notes or {})}, indent=2))
        return
    if title:
        print(title)
    print(format_text(result))
    for text in (notes or {}).values():
        print(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "base",
        nargs="+",
        help="baseline results directory; several (oldest first) pool their runs, so that the baseline's "
        "between-run noise is measured",
    )
    parser.add_argument("new", help="results directory to check against the baseline")
    parser.add_argument(
        "--threshold",
        type=float,
        default=THRESHOLD,
        help="relative change that counts when the test also finds it (default 0.05 = 5%%)",
    )
    parser.add_argument("--metric", choices=tuple(METRICS), default="latency", help="what to compare")
    parser.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="PATTERN",
        help="only cases whose id matches this glob, or whose id/parameters contain this text (repeatable)",
    )
    parser.add_argument("--alpha", type=float, default=ALPHA, help="one-sided test level (default 0.05)")
    parser.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="auto",
        help="auto: judge latency relative to the sentinel timed between the timed blocks where both rows "
        "carry it, else as calibrations (default); calibrations: divide NEW's times by the machine's drift "
        "when the calibration workloads changed significantly, over all processes or in a case's own; "
        "off: judge raw times",
    )
    parser.add_argument(
        "--per-case",
        action="store_true",
        help="judge each case on its own test, without the bar the runs' scatter and the number of cases set "
        "(about alpha x cases unchanged cases then flag by chance)",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def main(args: argparse.Namespace) -> int:
    """0: no regression; 1: regression(s); 2: bad input or nothing comparable (reasons printed)."""
    try:
        result = compare(
            args.base,
            args.new,
            args.threshold,
            args.metric,
            args.filter,
            getattr(args, "alpha", ALPHA),
            getattr(args, "normalize", "auto"),
            getattr(args, "per_case", False),
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"natbench compare: {exc}", file=sys.stderr)
        return 2
    show(result, args.json)
    if result.exit_code == 2:
        print("natbench compare: no case could be compared (reasons above)", file=sys.stderr)
    return result.exit_code
