"""Verdicts: each claim's expected value against what natbench measured, noise band included.

PASS: the band lies inside the accepted interval. FAIL: wholly outside. INCONCLUSIVE: it straddles a boundary.
SKIP: this machine cannot measure the claim (the reason says what is missing). ERROR: natbench got something
wrong (its code raised, every candidate row errored, a row its preset defines is missing).

Groups combine as the sentence says (`measure.aggregate`): "each" (every group must pass: one FAIL fails the
claim), "best" ("up to": PASS when one group's whole band clears the figure, FAIL when none reaches it),
"mean" / "median" ("on average": one value from the groups' values and bands).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from natbench.claims.measure import Measurement, measure
from natbench.claims.schema import Claim, load_claims

PASS, FAIL, INCONCLUSIVE, SKIP, ERROR = "PASS", "FAIL", "INCONCLUSIVE", "SKIP", "ERROR"
VERDICTS = (PASS, FAIL, INCONCLUSIVE, SKIP, ERROR)
JUDGED = (PASS, FAIL, INCONCLUSIVE)


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
    accepted: list[Any] | None = None
    aggregate: str = "each"
    provenance: str = ""
    claim_id: str = ""
    title: str = ""
    unverified: bool = False
    informative: bool = False
    skip_category: str = ""
    note: str = ""
    groups: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @property
    def counts_for_strict(self) -> bool:
        """FAIL of a verified, non-informative claim, or any ERROR (natbench itself is wrong)."""
        return self.verdict == ERROR or (
            self.verdict == FAIL and not self.unverified and not self.informative
        )


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


def _pool(ms: list[Measurement], how: str) -> Measurement:
    """One measurement of an "on average" claim: mean / median of the groups' values and of their bands."""
    fn = np.mean if how == "mean" else np.median
    prov = f"{how} over {len(ms)} groups: " + "; ".join(f"{m.label}: {m.value:.4g}" for m in ms)
    return Measurement(
        f"{how} of {len(ms)}",
        float(fn([m.value for m in ms])),
        float(fn([m.low for m in ms])),
        float(fn([m.high for m in ms])),
        prov,
        [r for m in ms for r in m.rows],
        f"{how} of the groups' bands",
    )


def combine(results: list[tuple[Measurement, str, str]], how: str) -> tuple[str, str]:
    """One verdict from per-group verdicts, as the claim's sentence reads ("each" or "best")."""
    verdicts = [v for _, v, _ in results]
    if len(results) == 1:
        return verdicts[0], results[0][2]
    counts = ", ".join(f"{verdicts.count(v)} {v}" for v in VERDICTS if v in verdicts)
    detail = "; ".join(f"{m.label}: {v} ({r})" for m, v, r in results)
    if how == "best":
        best = next((r for r in results if r[1] == PASS), None)
        if best is not None:
            return (
                PASS,
                f"best group {best[0].label} clears the figure: {best[2]} ({counts} of {len(results)})",
            )
        if all(v == FAIL for v in verdicts):
            return FAIL, f"no group reaches the figure ({counts}): {detail}"
        return INCONCLUSIVE, f"no group clears the figure, some may ({counts}): {detail}"
    if FAIL in verdicts:
        return FAIL, f"a group fails ({counts}): {detail}"
    if all(v == PASS for v in verdicts):
        return PASS, f"all {len(results)} groups PASS: {detail}"
    return INCONCLUSIVE, f"no group fails, not all pass ({counts}): {detail}"


def _base(claim: Claim, **kw) -> Verdict:
    return Verdict(
        id=kw.pop("id", claim.id),
        source=claim.source,
        kind=claim.kind,
        statement=claim.statement,
        expected=claim.expected,
        tolerance=claim.tolerance,
        aggregate=claim.measure.get("aggregate", "each"),
        claim_id=claim.id,
        title=claim.title,
        unverified=claim.unverified,
        informative=claim.informative,
        note=claim.note,
        accepted=None
        if claim.tolerance["mode"] == "exact" or claim.expected is None
        else list(accepted_interval(float(claim.expected), claim.tolerance)),
        **kw,
    )


def _group(m: Measurement, v: str, r: str) -> dict[str, Any]:
    return {
        "label": m.label,
        "measured": m.value,
        "band": [m.low, m.high],
        "band_source": m.band_source,
        "verdict": v,
        "reason": r,
        "provenance": m.provenance,
        "rows": m.rows,
    }


def judge_claim(claim: Claim, results_df=None) -> list[Verdict]:
    """One verdict per claim; scaling claims give one per (device, backend, kernel, dtype, ...) group."""
    outcome = measure(claim, results_df)
    if outcome.error is not None:
        return [_base(claim, verdict=ERROR, reason=outcome.error, skip_category=outcome.category)]
    if outcome.skip is not None:
        return [_base(claim, verdict=SKIP, reason=outcome.skip, skip_category=outcome.category)]
    how = claim.measure.get("aggregate", "each")
    ms = outcome.measurements
    if how in ("mean", "median") and len(ms) > 1:
        ms = [_pool(ms, how)]
    judged = [(m, *decide(claim.expected, claim.tolerance, m.value, m.low, m.high)) for m in ms]
    groups = [_group(*j) for j in judged]
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
    return [verdict_of(claim, judged, how)]


def verdict_of(
    claim: Claim, judged: list[tuple[Measurement, str, str]], how: str, note: str = "", **kw
) -> Verdict:
    """The claim's verdict from its judged groups [(measurement, verdict, reason)], combined as its sentence
    reads; `note` is added to the reason."""
    verdict, reason = combine(judged, how)
    if len(judged) == 1:
        m = judged[0][0]
        measured, band, prov = m.value, [m.low, m.high], m.provenance
    else:
        measured, band = [m.value for m, _, _ in judged], None
        prov = " | ".join(m.provenance for m, _, _ in judged)
    return _base(
        claim,
        verdict=verdict,
        reason=reason + note,
        measured=measured,
        band=band,
        provenance=prov,
        groups=[_group(*j) for j in judged],
        **kw,
    )


def judge(results_df=None, claims: list[Claim] | None = None) -> list[Verdict]:
    """Verdicts of `claims` (default: every shipped claim) on a results table (natbench.results.load); a table
    of several sweeps of the same cases is judged sweep by sweep and combined (natbench.claims.replicates)."""
    if claims is None:
        claims = load_claims()
    if results_df is not None:
        from natbench.results import COLUMNS

        missing = [c for c in COLUMNS if c not in results_df.columns]
        if missing:  # a hand-built table: absent columns read as null
            results_df = results_df.assign(**dict.fromkeys(missing))
    from natbench.claims.replicates import judge_sweeps, sweeps

    frames = sweeps(results_df)
    if len(frames) > 1:  # several sweeps of the same cases: replicates, not one pool of rows
        return judge_sweeps(frames, claims)
    out: list[Verdict] = []
    for claim in claims:
        out += judge_claim(claim, results_df)
    return out
