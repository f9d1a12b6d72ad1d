"""`ratio`: `field` of numerator rows over (or minus, op = "difference") denominator rows that agree on the
`match` columns (and machine). Latency and throughput ratios use interleaved pair rows (value and interval) when
the results have them."""

from __future__ import annotations

from natbench.claims.measure.bands import describe, pair_ratio, value_band
from natbench.claims.measure.groups import filled, label, with_machine
from natbench.claims.measure.outcome import Measurement, Outcome, error
from natbench.claims.measure.rows import select
from natbench.claims.schema import Claim

DEFAULT_MATCH = [
    "device",
    "device_name",
    "dtype",
    "mode",
    "batch",
    "resolution",
    "kernel_size",
    "dilation",
    "heads",
    "head_dim",
]


def _combine(op: str, a, b) -> tuple[float, float, float]:
    (av, alo, ahi), (bv, blo, bhi) = a, b
    if op == "difference":
        return av - bv, alo - bhi, ahi - blo
    return av / bv, alo / bhi, ahi / blo


def measure_ratio(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"), ok_only=False)  # each side's status is judged below
    if why:
        return why
    num, why = select(rows, claim, m["numerator"], side="numerator")
    if why:
        return why
    den, why = select(rows, claim, m["denominator"], side="denominator")
    if why:
        return why
    op, name = m.get("op", "ratio"), m["field"]
    match = with_machine(list(m.get("match", DEFAULT_MATCH)), df)
    num, den = filled(num, match), filled(den, match)
    num["_i"], den["_j"] = range(len(num)), range(len(den))
    pairs = num[[*match, "_i"]].merge(den[[*match, "_j"]], on=match)
    if len(pairs) == 0:
        return error(
            f"numerator rows ({m['numerator']}) and denominator rows ({m['denominator']}) exist but "
            f"none share {', '.join(match)}: the preset does not measure them on equal terms"
        )
    varying = {c for c in match if pairs[c].nunique() > 1}
    out = []
    for _, pair in pairs.iterrows():
        a, b = num.iloc[int(pair["_i"])], den.iloc[int(pair["_j"])]
        paired = None
        if op == "ratio" and name == "latency_ms":
            paired = pair_ratio(df, a.get("case_id"), b.get("case_id"))
        elif op == "ratio" and name == "throughput" and a.get("batch") == b.get("batch"):
            paired = pair_ratio(df, b.get("case_id"), a.get("case_id"))  # images/s a / b = latency b / a
        try:
            av, alo, ahi, how = value_band(a, name)
            bv, blo, bhi, _ = value_band(b, name)
        except (KeyError, TypeError, ValueError):
            continue
        if op == "ratio" and (bv <= 0 or blo <= 0):
            continue
        value, low, high = _combine(op, (av, alo, ahi), (bv, blo, bhi))
        if paired is not None:
            value, low, high, how = paired
        group = label({c: pair[c] for c in match}, varying | {"resolution"})
        sign = "-" if op == "difference" else "/"
        prov = (
            f"{name} {av:.4g} ({describe(a)}) {sign} {bv:.4g} ({describe(b)}) = {value:.4g} on "
            f"{a.get('device_name') or a.get('device')} {a.get('dtype')} batch {a.get('batch')}"
        )
        out.append(
            Measurement(
                f"{group}: {describe(a)} {sign} {describe(b)}",
                value,
                low,
                high,
                prov,
                [str(a.get("case_id")), str(b.get("case_id"))],
                how,
            )
        )
    if not out:
        return error(f"the matched rows have no usable {name} values")
    return Outcome(measurements=out)
