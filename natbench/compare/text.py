"""A comparison as text or JSON."""

from __future__ import annotations

import json

from natbench.compare.model import METRICS, SENTINEL_TEST, Comparison
from natbench.compare.rows import fmt_value


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
    if sc is not None and sc["applied"] and sc.get("spread") is None:
        within = sum(c.within_scatter for c in result.cases)
        lines.append(
            f"between runs: {sc['why']}; a change must exceed the t bar at alpha / (2 x {sc['cases']} cases); "
            f"{within} case(s) within it"
        )
    elif sc is not None and sc["applied"]:
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
            f"{c.verdict:<12} {c.ratio:>7.3f} {p:>6} {fmt_value(c.base, result.metric):>11} "
            f"{fmt_value(c.new, result.metric):>11}  {c.case_id} [{c.test}]"
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
