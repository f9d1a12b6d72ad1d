"""compare(): join result directories on case_id and judge every case."""

from __future__ import annotations

from pathlib import Path

from natbench.compare.machine import case_drift, machine_drift, sentinel_speed
from natbench.compare.model import ALPHA, METRICS, NORMALIZE, SENTINEL_TEST, THRESHOLD, Comparison
from natbench.compare.rows import load_rows, machine_mismatch, not_comparable_reason, pool, selected
from natbench.compare.scatter import against_scatter, between_runs, detectable
from natbench.compare.verdict import judge_at_sentinel, judge_in_range


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
    base_sets = [{k: v for k, v in load_rows(b).items() if selected(k, v, patterns)} for b in bases]
    new_rows = {k: v for k, v in load_rows(new).items() if selected(k, v, patterns)}
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
            got = judge_at_sentinel(b, n, speed, m, threshold, alpha)
        else:
            got = judge_in_range(b, n, m, threshold, alpha, drift, case_drift(b, n, alpha) if ranges else [])
        if isinstance(got, str):
            not_comparable.append(not_comparable_reason(case_id, b, n, got))
        else:
            cases.append(got)
    scatter = between_runs(cases, alpha, drift if m.name != "memory" else None)  # speed moves no bytes
    if scatter is not None and scatter["applied"]:
        scatter["detectable"] = detectable(cases, scatter, alpha)
        if per_case:
            scatter.update(applied=False, why="--per-case: each case judged on its own test")
        else:
            cases = [against_scatter(c, scatter, alpha) for c in cases]
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
