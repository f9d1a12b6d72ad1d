"""A row's value and noise band: the across-process 95 % intervals when the results have them (issue-12's
`latency_ci_*_ms`, `peak_mem_ci_*_bytes`), else the latency IQR of one process; counts are exact."""

from __future__ import annotations

import math

from natbench.claims.measure.rows import is_missing

BAND_COLUMNS = {
    "latency_ms": ("latency_ci_low_ms", "latency_ci_high_ms"),
    "peak_mem_bytes": ("peak_mem_ci_low_bytes", "peak_mem_ci_high_bytes"),
}


def _ci(row, name: str) -> tuple[float, float] | None:
    lo_col, hi_col = BAND_COLUMNS.get(name, (None, None))
    if lo_col is None:
        return None
    lo, hi = row.get(lo_col), row.get(hi_col)
    if is_missing(lo) or is_missing(hi):
        return None
    return float(lo), float(hi)


def latency(row) -> tuple[float, float, float, str]:
    v = float(row["latency_ms"])
    ci = _ci(row, "latency_ms")
    if ci is not None:
        return v, ci[0], ci[1], f"95 % CI across {row.get('repeats') or '?'} processes"
    iqr = row.get("latency_iqr_ms")
    half = 0.0 if is_missing(iqr) else float(iqr) / 2
    return v, max(v - half, 1e-12), v + half, "median +- IQR/2 of one process"


def value_band(row, name: str) -> tuple[float, float, float, str]:
    """(value, low, high, how the band was made) of column `name` (or a derived throughput / flops_rate)."""
    if name == "latency_ms":
        return latency(row)
    if name in ("throughput", "flops_rate"):
        if is_missing(row.get("latency_ms")):
            v = row.get(name)
            if is_missing(v):
                raise KeyError(name)
            return float(v), float(v), float(v), "one reading, no band"
        lat, lo, hi, how = latency(row)
        scale = float(row["batch"]) * 1000.0 if name == "throughput" else float(row["flops"]) * 1000.0
        v = row.get("throughput") if name == "throughput" else None
        v = scale / lat if is_missing(v) else float(v)
        return v, v * lat / hi, (v * lat / lo if lo > 0 else math.inf), how + " (through latency)"
    v = row.get(name)
    if is_missing(v):
        raise KeyError(name)
    v = float(v)
    ci = _ci(row, name)
    if ci is not None:
        return v, ci[0], ci[1], f"95 % CI across {row.get('repeats') or '?'} processes"
    return v, v, v, "one reading, no band"


def describe(row, extra: tuple[str, ...] = ()) -> str:
    keys = ("target", "backend", "kernel", *extra)
    return " ".join(f"{k}={row.get(k)}" for k in keys if not is_missing(row.get(k)))


def pair_ratio(df, num_id: str, den_id: str) -> tuple[float, float, float, str] | None:
    """Latency ratio num/den from a kind="pair" row (interleaved pairs, issue-12), inverted if stored den/num,
    else from a kind="group" row that timed both in the same processes (group_ratio)."""
    if df is None or "pair_of" not in df.columns:
        return group_ratio(df, num_id, den_id)
    pairs = df[df["kind"] == "pair"]
    for _, p in pairs.iterrows():
        of = p.get("pair_of")
        if not isinstance(of, (list, tuple)) or len(of) != 2 or p.get("metric", "latency") != "latency":
            continue
        r, lo, hi = (p.get(c) for c in ("ratio", "ratio_ci_low", "ratio_ci_high"))
        if any(is_missing(x) for x in (r, lo, hi)) or p.get("status", "ok") != "ok":
            continue
        if list(of) == [num_id, den_id]:
            return float(r), float(lo), float(hi), "95 % CI of interleaved pairs"
        if list(of) == [den_id, num_id] and min(r, lo, hi) > 0:
            return 1 / float(r), 1 / float(hi), 1 / float(lo), "95 % CI of interleaved pairs (inverted)"
    return group_ratio(df, num_id, den_id)


def group_ratio(df, num_id: str, den_id: str) -> tuple[float, float, float, str] | None:
    """Latency ratio num/den from a kind="group" row whose members include both: each process's ratio of the two
    members' medians, and their geometric mean with its t interval (as a pair's, natbench.measure.stats.ratio_ci)."""
    from natbench.measure.group import per_process
    from natbench.measure.stats import ratio_ci

    if df is None or "group_of" not in df.columns:
        return None
    for row in df[(df["kind"] == "group") & (df["status"] == "ok")].to_dict("records"):
        members = [str(c) for c in row.get("group_of") or []]
        if num_id not in members or den_id not in members:
            continue
        values = per_process(row, [members.index(num_id), members.index(den_id)])
        if not values or any(not (a > 0 and b > 0) for a, b in values):
            continue
        r, lo, hi = ratio_ci([a / b for a, b in values])
        return r, lo, hi, f"95 % CI of {len(values)} processes timing a group interleaved"
    return None
