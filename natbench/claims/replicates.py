"""Several sweeps of the same cases, judged as replicates: each sweep alone, then one verdict per claim.

Results directories that share at least half of their cases (case_id, machine, threads) are sweeps of them. Judged as one table
their rows would mix: a ratio claim paired one sweep's numerator with another's denominator (four groups from
two sweeps), and a scaling fit counted every sweep's processes as independent, although a sweep's processes
share its minutes of the machine (between cpu-quick sweeps a paired ratio moved 4 % where each sweep's interval
said +-2 %). So each sweep is judged alone and a claim's values from the sweeps are combined as a random-effects
mean (natbench.measure.stats.replicate_ci), on a log scale for positive values. Other directories (an
accuracy run beside a CPU sweep, a directory re-running a few cases) are parts of every sweep, as before.
"""

from __future__ import annotations

import math
import numbers
from collections import defaultdict
from dataclasses import replace
from typing import Any

from natbench.claims.measure.outcome import Measurement
from natbench.measure.drift import Z95  # a band is a 95 % interval: half-width / Z95 is the standard error


def _keys(frame) -> set[tuple]:
    cols = [c for c in ("case_id", "machine", "threads") if c in frame.columns]
    return set(frame[cols].astype(str).itertuples(index=False, name=None))


# directories are sweeps of each other when they share this share of the larger one's cases
REPLICATE_OVERLAP = 0.5


def _replicates(a: set, b: set) -> bool:
    return len(a & b) >= REPLICATE_OVERLAP * max(len(a), len(b), 1)


def sweeps(df) -> list[Any]:
    """The table as one frame per sweep: directories (`source`) that share most of their cases are replicates
    (a directory re-running a few cases is not: it joins the pool as before); frame i holds the i-th directory of
    each set of replicates and every directory that is no one's replicate. One frame when there are no
    replicates."""
    if df is None or "source" not in df.columns or df["source"].nunique() < 2:
        return [df]
    sources = list(dict.fromkeys(df["source"]))
    keys = {s: _keys(df[df["source"] == s]) for s in sources}
    sets: list[list[str]] = []
    for s in sources:
        joined = [g for g in sets if any(_replicates(keys[s], keys[o]) for o in g)]
        sets = [g for g in sets if g not in joined] + [[*(x for g in joined for x in g), s]]
    k = max(len(g) for g in sets)
    if k < 2:
        return [df]
    frames = []
    for i in range(k):
        chosen = [g[0] if len(g) == 1 else g[i] for g in sets if len(g) == 1 or i < len(g)]
        frames.append(df[df["source"].isin(chosen)])
    return frames


def sweep_name(frame) -> str:
    return ", ".join(sorted(set(frame["source"])))


def _scale(values: list[float], lows: list[float]):
    if all(v > 0 for v in values) and all(lo > 0 for lo in lows):
        return math.log, math.exp, "log"
    return (lambda x: x), (lambda x: x), "linear"


def _number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)


def distinct(readings: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Readings that are not the same reading seen from several frames (rows of a directory every frame holds,
    or a claim that reads no rows): one per (rows, value, band)."""
    seen, out = set(), []
    for name, g in readings:
        key = (tuple(g.get("rows") or ()), repr(g.get("measured")), repr(g.get("band")))
        if key not in seen:
            seen.add(key)
            out.append((name, g))
    return out


def combine_group(
    label: str, groups: list[tuple[str, dict[str, Any]]], exact: bool = False
) -> Measurement | None:
    """One measurement from a group's per-sweep (sweep name, group dict) readings; None when fewer than two sweeps
    give a finite value and band, or for an exact claim whose sweeps read different values."""
    from natbench.measure.stats import replicate_ci

    if exact:
        values = {repr(g.get("measured")) for _, g in groups}
        if len(values) != 1:
            return None
        g = groups[0][1]
        v = g.get("measured")
        return Measurement(label, v, v, v, f"the same in {len(groups)} sweeps", g.get("rows") or [], "exact")
    usable = [
        (src, g)
        for src, g in groups
        if _number(g.get("measured")) and g.get("band") and all(_number(b) for b in g["band"])
    ]
    if len(usable) < 2:
        return None
    values = [float(g["measured"]) for _, g in usable]
    lows = [float(g["band"][0]) for _, g in usable]
    highs = [float(g["band"][1]) for _, g in usable]
    fwd, back, scale = _scale(values, lows)
    errors = [(fwd(h) - fwd(lo)) / (2 * Z95) for lo, h in zip(lows, highs, strict=True)]
    try:
        r = replicate_ci([fwd(v) for v in values], errors)
    except ValueError:  # a malformed band (high below low): the sweeps stay apart
        return None
    spread = f"{math.expm1(r.between_sd) * 100:.1f} %" if scale == "log" else f"{r.between_sd:.3g}"
    per_sweep = "; ".join(
        f"{src}: {v:.4g} [{lo:.4g}, {h:.4g}]"
        for (src, _), v, lo, h in zip(usable, values, lows, highs, strict=True)
    )
    left = len(groups) - len(usable)
    return Measurement(
        label,
        back(r.centre),
        back(r.low),
        back(r.high),
        f"over {r.sweeps} sweeps ({per_sweep})"
        + (f"; {left} without a finite band left out" if left else ""),
        sorted({row for _, g in usable for row in g.get("rows") or []}),
        f"random-effects mean of {r.sweeps} sweeps ({scale} scale, between-sweep SD {spread}, "
        f"Hartung-Knapp t on {r.sweeps - 1} df)",
    )


def _note(verdict, text: str):
    return replace(verdict, note=f"{verdict.note} {text}".strip())


def combine_sweeps(claim, readings: list[tuple[str, Any]]):
    """One verdict from a claim's per-sweep verdicts with one id [(sweep name, Verdict)]: an ERROR in any sweep
    is the verdict; groups judged in two or more sweeps are combined (combine_group) and judged again."""
    from natbench.claims.judge import ERROR, INCONCLUSIVE, JUDGED, decide, verdict_of

    for name, v in readings:
        if v.verdict == ERROR:
            return replace(v, reason=f"in sweep {name}: {v.reason}")
    judged = [(name, v) for name, v in readings if v.verdict in JUDGED]
    if not judged:
        return readings[0][1]
    if len(judged) == 1:
        return _note(judged[0][1], f"(judged in 1 of {len(readings)} sweeps: {judged[0][0]})")
    labels = list(dict.fromkeys(g["label"] for _, v in judged for g in v.groups))
    exact = claim.tolerance.get("mode") == "exact"
    results = []
    for label in labels:
        per_sweep = distinct([(name, g) for name, v in judged for g in v.groups if g["label"] == label])
        m = combine_group(label, per_sweep, exact) if len(per_sweep) > 1 else None
        if m is not None:
            results.append((m, *decide(claim.expected, claim.tolerance, m.value, m.low, m.high)))
            continue
        g = per_sweep[0][1]  # one reading however many frames saw it, or readings that cannot be combined
        band = g.get("band") or [g["measured"], g["measured"]]
        m = Measurement(label, g["measured"], band[0], band[1], g["provenance"], g["rows"], g["band_source"])
        seen = {x["verdict"] for _, x in per_sweep}
        if len(seen) == 1:
            alike = "" if len(per_sweep) == 1 else f" (alike in {len(per_sweep)} sweeps)"
            results.append((m, g["verdict"], g["reason"] + alike))
        else:
            each = "; ".join(f"{name}: {x['verdict']} ({x['measured']})" for name, x in per_sweep)
            results.append((m, INCONCLUSIVE, f"the sweeps disagree and cannot be combined: {each}"))
    note = f" (judged in {len(judged)} of {len(readings)} sweeps)" if len(judged) < len(readings) else ""
    return verdict_of(claim, results, claim.measure.get("aggregate", "each"), note, id=judged[0][1].id)


def judge_sweeps(frames: list[Any], claims) -> list[Any]:
    """Each claim judged in every sweep's frame, then one verdict per verdict id (combine_sweeps)."""
    from natbench.claims.judge import judge_claim

    names = [sweep_name(f) for f in frames]
    out = []
    for claim in claims:
        by_id: dict[str, list] = defaultdict(list)
        for name, frame in zip(names, frames, strict=True):
            for v in judge_claim(claim, frame):
                by_id[v.id].append((name, v))
        out += [combine_sweeps(claim, readings) for readings in by_id.values()]
    return out
