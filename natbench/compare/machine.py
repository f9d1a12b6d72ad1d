"""The machine's own speed between two result sets: calibration workloads (matmul, DRAM copy) and the sentinel."""

from __future__ import annotations

from typing import Any

import numpy as np

from natbench.compare.model import ALPHA, CALIBRATION_COLUMNS, Metric
from natbench.compare.rows import floats, missing, number


def _workload_drift(base_rows, new_rows, column: str, alpha: float) -> dict[str, Any] | None:
    from scipy.stats import mannwhitneyu

    def values(rows):
        return [v for r in rows.values() if r.get("status") == "ok" for v in floats(r.get(column))]

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
    if missing(base.get("sentinel")) or base.get("sentinel") != new.get("sentinel"):
        return None
    if min(len(floats(r.get("latency_rel_process"))) for r in (base, new)) < 2:
        return None
    readings = floats(base.get("sentinel_process_ms"))
    return float(np.median(readings)) if readings else None


def at_sentinel(row: dict[str, Any], speed: float, metric: Metric) -> dict[str, Any]:
    """A row whose latencies are its processes' relative latencies x `speed` (ms of a sentinel call): what
    each process would have taken with the machine at that speed; throughput and baseline points follow."""
    out = dict(row)
    rel = floats(row.get("latency_rel_process"))
    out["latency_process_ms"] = [v * speed for v in rel]
    out["latency_samples_ms"] = None
    point = number(row.get("latency_rel"))
    out["latency_ms"] = (point if point is not None else float(np.median(rel))) * speed
    batch = number(row.get("batch")) or 1.0
    if number(row.get("throughput")) is not None:
        out["throughput"] = batch * 1e3 / out["latency_ms"]
    if row.get("base_rel_points"):
        ms = [v * speed for v in row["base_rel_points"]]
        out["base_points"] = ms if metric.name == "latency" else [batch * 1e3 / v for v in ms]
    return out


def scaled(row: dict[str, Any], factor: float) -> dict[str, Any]:
    """NEW's latency columns divided by the machine's drift factor (throughput multiplied)."""
    out = dict(row)
    for col in ("latency_ms",):
        if number(out.get(col)) is not None:
            out[col] = number(out[col]) / factor
    for col in ("latency_process_ms", "latency_samples_ms"):
        vals = floats(out.get(col))
        if vals:
            out[col] = [v / factor for v in vals]
    if number(out.get("throughput")) is not None:
        out["throughput"] = number(out["throughput"]) * factor
    return out
