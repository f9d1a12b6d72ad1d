"""`rate`: achieved FLOP/s (the op's analytic FLOPs / latency)."""

from __future__ import annotations

from natbench.claims.measure.bands import describe, value_band
from natbench.claims.measure.outcome import Measurement, Outcome, error
from natbench.claims.measure.rows import is_missing, select
from natbench.claims.schema import Claim


def measure_rate(claim: Claim, df) -> Outcome:
    rows, why = select(df, claim, claim.measure.get("where"))
    if why:
        return why
    out = []
    for _, row in rows.iterrows():
        if is_missing(row.get("flops")) or is_missing(row.get("latency_ms")):
            continue
        v, lo, hi, how = value_band(row, "flops_rate")
        name = describe(row, ("device_name", "dtype", "resolution", "kernel_size"))
        out.append(
            Measurement(
                name, v, lo, hi, f"flops / latency = {v:.4g} FLOP/s at {name}", [str(row.get("case_id"))], how
            )
        )
    if not out:
        return error("the selected op rows have no flops and latency")
    return Outcome(measurements=out)
