"""Between runs: how far the runs' offsets scatter the cases' changes, and the bar a change must clear."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from natbench.compare.model import CaseDelta

SCATTER_MIN_CASES = 20  # fewer cases do not tell their scatter from their changes
MACHINE_MOVED = 0.05  # a calibration this much faster or slower: the machine ran at another speed
SCATTER_MAX_ALIKE = 0.2  # A/A sweeps on the VM: at most 4 of 61 cases (then) flagged one way before the bar


def log_change(base: list[float], new: list[float]) -> dict[str, float]:
    """log(NEW / BASE) of the positive values' geometric means, its standard error and Welch-Satterthwaite
    degrees of freedom; {} or the change alone where there is no spread."""
    b, n = (np.log([v for v in vals if v > 0]) for vals in (base, new))
    if len(b) < 2 or len(n) < 2:
        return {}
    change = float(n.mean() - b.mean())
    vb, vn = b.var(ddof=1) / len(b), n.var(ddof=1) / len(n)
    se = math.sqrt(vb + vn)
    if se <= 0:
        return {"log_change": change}
    df = (vb + vn) ** 2 / (vb**2 / (len(b) - 1) + vn**2 / (len(n) - 1))
    return {"log_change": change, "change_se": se, "change_df": df}


def machine_moved(drift: dict[str, Any] | None) -> float | None:
    """The larger calibration factor (matmul or DRAM copy, NEW / BASE) where it moved by MACHINE_MOVED or more
    (and significantly); else None."""
    if not drift or not drift.get("significant"):
        return None
    factors = [d["factor"] for d in (drift.get("compute"), drift.get("memory")) if d and d["significant"]]
    far = max(factors, key=lambda f: abs(math.log(f)), default=None)
    return far if far is not None and abs(math.log(far)) >= math.log1p(MACHINE_MOVED) else None


def between_runs(
    cases: list[CaseDelta], alpha: float, drift: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    """The runs' own scatter and the bar a change must clear (`applied`), or why there is none; None for a
    comparison of one case.

    One sweep's processes, spread over its minutes, still share that sweep, and 54 cases tested at one-sided
    alpha 0.05 flag about 3 by chance. A case's log change is its true change, plus the runs' offset for it
    (SD tau, the same for every case; with several baselines see case_tau), plus its processes' noise (its
    standard error). tau is what the cases' changes scatter beyond their standard errors: the robust SD of the
    changes (MAD about their median, scipy.stats.median_abs_deviation) squared, less their median squared
    standard error. A regression or improvement must then exceed, in units of sqrt(se^2 + tau^2), the Student t
    quantile at alpha / (2 x cases) with its Welch degrees of freedom: a comparison of unchanged code flags a
    case, either way, with probability about alpha. With more than SCATTER_MAX_ALIKE of the cases changed the
    same way on their own, they are a change (a kernel most cases share), not the runs' scatter, and would widen
    the bar that should flag them: tau is then 0 and the bar only counts the cases (and, with several
    baselines, each case's own offsets: case_tau). Unless the machine's own calibration workloads moved by
    MACHINE_MOVED or more too (`drift`, see machine_drift), which makes the machine the likelier cause: of 42
    comparisons among 7 cpu-quick sweeps, 12 met a shared change, and in each the machine's matmul or DRAM-copy
    calibration had moved by 10-16 %. With 2 to SCATTER_MIN_CASES - 1 cases the scatter cannot be told from the
    changes: tau is 0 and the bar counts the cases only (each case's processes, at alpha / (2 x cases))."""
    from scipy.stats import median_abs_deviation

    if len(cases) < 2:
        return None
    known = [c for c in cases if c.change_se is not None]
    alike = max(sum(c.verdict == v for c in cases) for v in ("regression", "improvement"))
    if len(known) < SCATTER_MIN_CASES:
        why = f"{len(known)} case(s) with a spread, fewer than {SCATTER_MIN_CASES}, cannot show how the runs scatter"
        if len(known) < 2:
            return {
                "applied": False,
                "why": why + "; the test sees only each case's processes",
                "cases": len(known),
            }
        # the bar still counts the cases: per case at alpha, 7 smoke cases flagged one in 5 of 20 A/A comparisons
        why += "; the bar counts the cases, not the runs' scatter (tau 0)"
        return {
            "applied": True,
            "cases": len(known),
            "spread": None,
            "noise": None,
            "tau": 0.0,
            "alike": alike,
            "why": why,
        }
    spread = float(median_abs_deviation([c.log_change for c in known], scale="normal"))
    noise = float(np.median([c.change_se for c in known]))
    tau = math.sqrt(max(0.0, spread**2 - noise**2))
    out = {"applied": True, "cases": len(known), "spread": spread, "noise": noise, "tau": tau, "alike": alike}
    if alike > SCATTER_MAX_ALIKE * len(cases):
        moved = machine_moved(drift)
        if moved is None:
            why = f"{alike} of {len(cases)} cases changed the same way on their own: a shared change, not counted"
            out.update(tau=0.0, why=why)
        else:
            out["why"] = (
                f"{alike} of {len(cases)} cases changed the same way on their own, and the machine's calibrations "
                f"moved by x{moved:.3f}: kept as the runs' scatter"
            )
    return out


def _bar(case: CaseDelta, scatter: dict[str, Any], alpha: float) -> float:
    """The t a case's change must exceed, in units of sqrt(se^2 + tau^2)."""
    from scipy.stats import t as student

    return float(student.isf(alpha / (2 * scatter["cases"]), case.change_df))


# the weight of the runs' common scatter against a case's own baseline runs, in degrees of freedom
PRIOR_DF = 2


def case_tau(case: CaseDelta, scatter: dict[str, Any]) -> float:
    """The SD of this case's log change that the runs, not its processes, explain: the runs' common tau, or,
    with several baseline runs, that moderated toward the case's own offsets between them (case_offsets):
    NEW is one more run (its offset counts once) against the mean of k baseline runs (1 / k of one). Never
    below the common tau: a few runs' offsets often read 0 (floored), and the bar's t quantile does not count
    the uncertainty of a case's own variance."""
    if case.run_var is None or not case.run_df:
        return scatter["tau"]
    own = (1 + 1 / max(case.base_runs, 1)) * case.run_var
    moderated = math.sqrt((PRIOR_DF * scatter["tau"] ** 2 + case.run_df * own) / (PRIOR_DF + case.run_df))
    return max(scatter["tau"], moderated)


def detectable(cases: list[CaseDelta], scatter: dict[str, Any], alpha: float) -> dict[str, float]:
    """The smallest change the bar lets through, over the cases: its median and lower quartile (fractions)."""
    need = [
        math.exp(_bar(c, scatter, alpha) * math.hypot(c.change_se, case_tau(c, scatter))) - 1
        for c in cases
        if c.change_se is not None
    ]
    return {"median": float(np.median(need)), "quartile": float(np.percentile(need, 25))}


def against_scatter(case: CaseDelta, scatter: dict[str, Any], alpha: float) -> CaseDelta:
    if case.verdict == "unchanged" or case.change_se is None:
        return case
    tau = case_tau(case, scatter)
    total = case.log_change / math.hypot(case.change_se, tau)
    bar = _bar(case, scatter, alpha)
    if abs(total) > bar:
        return case
    whose = "the runs'" if case.run_var is None else f"its {case.base_runs} baseline runs' and the runs'"
    must = f"{'an' if case.verdict == 'improvement' else 'a'} {case.verdict} must exceed {bar:.1f}"
    if scatter.get("spread") is None and case.run_var is None:
        test = f"{case.test}; below the bar for {scatter['cases']} cases (t {abs(total):.1f}; {must})"
    else:
        test = f"{case.test}; within the runs' scatter (t {abs(total):.1f} with {whose} {tau:.1%}; {must})"
    return replace(case, verdict="unchanged", test=test, within_scatter=True)


def case_offsets(base: dict[str, Any], column: str) -> dict[str, float] | None:
    """How far this case's baseline runs sit apart beyond their processes' noise: the variance of the runs'
    mean log values less the mean squared standard error of those means (floored at 0), on k - 1 degrees of
    freedom; None with fewer than 2 runs of at least 2 positive values. A sweep spreads a case's processes
    over its minutes, but some cases move further from one sweep to the next: over 7 cpu-quick sweeps on the
    VM, the gather reference NA at 14x14 by 20 % (SD), the median case by 6 %."""
    runs = [
        np.log([v for v in vals if v > 0]) for vals in (base.get("base_run_values") or {}).get(column, [])
    ]
    runs = [r for r in runs if len(r) >= 2]
    if len(runs) < 2:
        return None
    means = np.array([r.mean() for r in runs])
    noise = float(np.mean([r.var(ddof=1) / len(r) for r in runs]))
    return {"var": max(0.0, float(means.var(ddof=1)) - noise), "df": len(runs) - 1}


def with_offsets(case: CaseDelta, base: dict[str, Any], column: str) -> CaseDelta:
    got = case_offsets(base, column)
    return case if got is None else replace(case, run_var=got["var"], run_df=got["df"])
