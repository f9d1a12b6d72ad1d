"""Verdicts: each claim's expected value against what natbench measured, noise band included.

PASS: the whole noise band lies inside the tolerance. FAIL: it lies wholly outside. INCONCLUSIVE: it straddles
the boundary (or groups of the same claim disagree). SKIP: nothing here measures the claim (reason in words).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from natbench.claims.measure import Measurement, measure
from natbench.claims.schema import Claim, load_claims

PASS, FAIL, INCONCLUSIVE, SKIP = "PASS", "FAIL", "INCONCLUSIVE", "SKIP"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, SKIP)


@dataclass
class Verdict:
    id: str
    verdict: str
    reason: str
    source: str
    kind: str
    statement: str
    expected: Any
    tolerance: dict[str, Any]
    measured: Any = None
    band: list[Any] | None = None
    provenance: str = ""
    claim_id: str = ""
    title: str = ""
    unverified: bool = False
    note: str = ""
    groups: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))


def _plain(obj: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, non-finite floats to None."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def accepted_interval(expected: float, tolerance: dict[str, Any]) -> tuple[float, float]:
    """The measured values a claim accepts under its tolerance mode."""
    mode, value = tolerance["mode"], float(tolerance.get("value", 0))
    if mode == "absolute":
        return expected - value, expected + value
    if mode == "relative":
        return expected - value * abs(expected), expected + value * abs(expected)
    if mode == "at_least":
        return expected - value, math.inf
    if mode == "at_most":
        return -math.inf, expected + value
    raise ValueError(f"tolerance mode {mode!r} has no interval")


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def decide(expected: Any, tolerance: dict[str, Any], value: Any, low: Any, high: Any) -> tuple[str, str]:
    """Verdict and reason for one measurement with noise band [low, high]."""
    if tolerance["mode"] == "exact":
        ok = value == expected
        return (
            (PASS, "measured equals expected") if ok else (FAIL, f"measured {value} != expected {expected}")
        )
    lo_ok, hi_ok = accepted_interval(float(expected), tolerance)
    low, high = float(low), float(high)
    accept = f"accepted [{_fmt(lo_ok)}, {_fmt(hi_ok)}]"
    band = f"measured {_fmt(float(value))}" + ("" if low == high else f" (band {_fmt(low)}..{_fmt(high)})")
    if lo_ok <= low and high <= hi_ok:
        return PASS, f"{band} within {accept}"
    if high < lo_ok or low > hi_ok:
        return FAIL, f"{band} outside {accept}"
    return INCONCLUSIVE, f"{band} straddles the tolerance boundary, {accept}"


def _combine(results: list[tuple[Measurement, str, str]]) -> tuple[str, str]:
    verdicts = [v for _, v, _ in results]
    if len(set(verdicts)) == 1:
        if len(results) == 1:
            return verdicts[0], results[0][2]
        return verdicts[0], f"all {len(results)} groups {verdicts[0]}: " + "; ".join(
            f"{m.label}: {r}" for m, _, r in results
        )
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    return INCONCLUSIVE, f"groups disagree ({counts}): " + "; ".join(
        f"{m.label}: {v} ({r})" for m, v, r in results
    )


def _base(claim: Claim, **kw) -> Verdict:
    return Verdict(
        id=kw.pop("id", claim.id),
        source=claim.source,
        kind=claim.kind,
        statement=claim.statement,
        expected=claim.expected,
        tolerance=claim.tolerance,
        claim_id=claim.id,
        title=claim.title,
        unverified=claim.unverified,
        note=claim.note,
        **kw,
    )


def judge_claim(claim: Claim, results_df=None) -> list[Verdict]:
    """One verdict per claim; scaling claims give one per (device, backend, kernel, dtype, ...) group."""
    outcome = measure(claim, results_df)
    if outcome.skip is not None:
        return [_base(claim, verdict=SKIP, reason=outcome.skip)]
    judged = [
        (m, *decide(claim.expected, claim.tolerance, m.value, m.low, m.high)) for m in outcome.measurements
    ]
    groups = [
        {
            "label": m.label,
            "measured": m.value,
            "band": [m.low, m.high],
            "verdict": v,
            "reason": r,
            "provenance": m.provenance,
        }
        for m, v, r in judged
    ]
    if outcome.expand:
        return [
            _base(
                claim,
                id=f"{claim.id}[{m.label}]",
                verdict=v,
                reason=r,
                measured=m.value,
                band=[m.low, m.high],
                provenance=m.provenance,
                groups=[g],
            )
            for (m, v, r), g in zip(judged, groups, strict=True)
        ]
    verdict, reason = _combine(judged)
    if len(judged) == 1:
        m = judged[0][0]
        measured, band, prov = m.value, [m.low, m.high], m.provenance
    else:
        measured = [m.value for m, _, _ in judged]
        band = None
        prov = " | ".join(m.provenance for m, _, _ in judged)
    return [
        _base(
            claim,
            verdict=verdict,
            reason=reason,
            measured=measured,
            band=band,
            provenance=prov,
            groups=groups,
        )
    ]


def judge(results_df=None, claims: list[Claim] | None = None) -> list[Verdict]:
    """Verdicts of `claims` (default: every shipped claim) on a results table (natbench.results.load)."""
    if claims is None:
        claims = load_claims()
    if results_df is not None:
        from natbench.results import COLUMNS

        missing = [c for c in COLUMNS if c not in results_df.columns]
        if missing:  # a hand-built table: absent columns read as null
            results_df = results_df.assign(**dict.fromkeys(missing))
    out: list[Verdict] = []
    for claim in claims:
        out += judge_claim(claim, results_df)
    return out
