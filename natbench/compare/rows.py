"""Reading result rows for compare: numbers and lists from a row, the rows of a directory, pooled baselines."""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from natbench.compare.model import DESCRIBE, MACHINE_KEYS, Metric
from natbench.results import RESULTS_FILE, has_rows


def missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def floats(value) -> list[float]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if value is None or isinstance(value, float) or not hasattr(value, "__iter__"):
        return []
    out = [number(v) for v in value]
    return [v for v in out if v is not None]


def load_rows(directory: str | Path):
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
    return {r["case_id"]: r for r in rows if r.get("kind") not in ("pair", "group")}


def describe(row: dict[str, Any]) -> str:
    parts = []
    for col in DESCRIBE:
        value = row.get(col)
        if missing(value):
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
        if missing(bv) and missing(nv):
            continue
        if key == "machine" and (missing(bv) or missing(nv)):
            continue  # older rows have no machine column: device_name and threads decide
        if missing(bv) or missing(nv) or bv != nv:
            out.append(f"{key} {bv} vs {nv}")
    return out


def metric_values(row: dict[str, Any], metric: Metric) -> tuple[float | None, list[float], str]:
    """(point, per-unit values, what the values are) of one row for a metric."""
    point = number(row.get(metric.column))
    per = floats(row.get(metric.per_process))
    kind = "processes"
    if metric.name == "latency" and len(per) < 2:
        per, kind = floats(row.get("latency_samples_ms")), "within-run samples"
    if metric.name == "throughput":
        batch = number(row.get("batch")) or 1.0
        per = [batch * 1e3 / v for v in per if v > 0]
        if len(per) < 2:
            per = [batch * 1e3 / v for v in floats(row.get("latency_samples_ms")) if v > 0]
            kind = "within-run samples"
    if len(per) < 2:
        per, kind = [], "none"
    return point, per, kind


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
        out[col] = [v for r in ok for v in floats(r.get(col))] or None
    points = [p for p in (number(r.get(metric.column)) for r in ok) if p is not None]
    if points:
        out[metric.column] = float(np.median(points))
    out["base_points"] = points
    out["base_run_values"] = {col: [floats(r.get(col)) for r in ok] for col in RUN_COLUMNS}
    rel = [number(r.get("latency_rel")) for r in ok]
    # relative times pool only when every run has them, from one sentinel
    if len({r.get("sentinel") for r in ok}) == 1 and all(v is not None for v in rel):
        out["base_rel_points"] = rel
        out["latency_rel"] = float(np.median(rel))
    else:
        out["latency_rel_process"] = out["sentinel_process_ms"] = out["base_rel_points"] = None
    out["busy"] = any(r.get("busy") is True for r in ok)
    floors = [f for f in (number(r.get("latency_drift_cv")) for r in ok) if f is not None]
    out["latency_drift_cv"] = max(floors, default=None)  # the widest any baseline run carried
    return out


def selected(case_id: str, row: dict[str, Any], patterns: list[str]) -> bool:
    if not patterns:
        return True
    text = f"{case_id} {describe(row)}"
    return any(fnmatch.fnmatch(case_id, p) if any(c in p for c in "*?[") else p in text for p in patterns)


def not_comparable_reason(
    case_id: str, base: dict[str, Any], new: dict[str, Any], reason: str
) -> dict[str, Any]:
    return {
        "case_id": case_id,
        "base_status": base.get("status"),
        "new_status": new.get("status"),
        "reason": reason,
        "describe": describe(new),
    }


def fmt_value(value: float, metric: str) -> str:
    return f"{value / 2**20:.2f} MiB" if metric == "memory" else f"{value:.4g}"
