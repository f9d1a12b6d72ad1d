"""One case's verdict: the threshold, the Mann-Whitney U test, and the machine's share taken out."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from natbench.compare.machine import at_sentinel, scaled
from natbench.compare.model import ALPHA, SENTINEL_TEST, CaseDelta, Metric
from natbench.compare.rows import describe, fmt_value, machine_mismatch, metric_values, missing, number
from natbench.compare.scatter import log_change, with_offsets
from natbench.measure.drift import Z95


def judge(
    base: dict[str, Any], new: dict[str, Any], metric: Metric, threshold: float, alpha: float = ALPHA
) -> CaseDelta | str:
    """A CaseDelta for two rows of one case, or why they cannot be compared."""
    from scipy.stats import mannwhitneyu

    if base.get("status") != "ok" or new.get("status") != "ok":
        return f"not ok in both: base {base.get('status')}, new {new.get('status')}"
    machine = machine_mismatch(base, new)
    if machine:
        return "measured on different machines: " + ", ".join(machine)
    methods = [r.get("memory_method") for r in (base, new)]
    if metric.name == "memory" and not any(missing(m) for m in methods) and methods[0] != methods[1]:
        if any(str(m).startswith("not measured") for m in methods):
            return f"peak memory not measured: base {methods[0]!r}, new {methods[1]!r}"
        return f"peak memory read differently: base {methods[0]!r}, new {methods[1]!r}"
    b, b_vals, b_kind = metric_values(base, metric)
    n, n_vals, n_kind = metric_values(new, metric)
    if not b or not n or b <= 0 or n <= 0:
        return f"no {metric.column} in {'base' if not b else 'new'}"
    ratio = n / b
    # rows whose interval carries the machine's drift floor (a short `natbench run`): two such runs differ by
    # the floors of both even when nothing changed, so the change must exceed that too
    floor = math.hypot(*(number(r.get("latency_drift_cv")) or 0.0 for r in (base, new)))
    if metric.name != "memory" and floor > 0:
        threshold = max(threshold, math.exp(Z95 * floor) - 1)

    def beyond(r: float) -> tuple[bool, bool]:  # (worse, better) by more than the threshold
        if metric.higher_is_worse:
            return r > 1 + threshold, r < 1 / (1 + threshold)
        return r < 1 / (1 + threshold), r > 1 + threshold

    worse, better = beyond(ratio)
    points = [p for p in base.get("base_points") or [] if p > 0]
    if len(points) > 1:
        # and beyond every baseline run: the worst for a regression, the best for an improvement
        high, low = max(points), min(points)
        worst, best = (high, low) if metric.higher_is_worse else (low, high)
        worse, better = worse and beyond(n / worst)[0], better and beyond(n / best)[1]
    p = None
    if b_vals and n_vals:
        side = "greater" if metric.higher_is_worse else "less"
        p = float(mannwhitneyu(n_vals, b_vals, alternative=side).pvalue)
        p_better = float(
            mannwhitneyu(n_vals, b_vals, alternative="less" if side == "greater" else "greater").pvalue
        )
        kinds = {b_kind, n_kind}
        test = f"Mann-Whitney U over {' / '.join(sorted(kinds))} ({len(b_vals)} vs {len(n_vals)})"
        if len(points) > 1:
            test += f", pooled over {len(points)} baseline runs, beyond each"
        if kinds != {"processes"}:
            test += ": old rows without per-process values, between-run noise not measured"
        if metric.name != "memory" and floor > 0:
            test += f"; rows carry a drift floor: change must exceed {threshold:.1%}"
        sig_worse, sig_better = p <= alpha + 1e-12, p_better <= alpha + 1e-12
        if (worse and not sig_worse) or (better and not sig_better):
            test += (
                f"; beyond the threshold but not significant ({len(b_vals)} vs {len(n_vals)} "
                f"{'/'.join(sorted(kinds))}): more processes (--repeats) might decide"
            )
    else:
        test = "threshold only: no per-process values or samples"
        if metric.name != "memory" and floor > 0:
            test += f" (raised to {threshold:.1%} by the rows' drift floor)"
        sig_worse = sig_better = True
    verdict = "regression" if worse and sig_worse else "improvement" if better and sig_better else "unchanged"
    busy = any(r.get("busy") is True for r in (base, new))
    return CaseDelta(
        new.get("case_id"),
        describe(new),
        b,
        n,
        ratio,
        p,
        test,
        len(b_vals),
        len(n_vals),
        verdict,
        busy,
        base_runs=max(1, len(points)),
        **(log_change(b_vals, n_vals) if b_vals and n_vals else {}),
    )


def judge_in_range(
    base: dict[str, Any],
    new: dict[str, Any],
    metric: Metric,
    threshold: float,
    alpha: float,
    drift: dict[str, Any] | None,
    local: list[float],
) -> CaseDelta | str:
    """judge() with NEW's times divided by the machine's share of the case's change: the factor nearest to it in
    the sweep-wide range (where applied) widened by the case's own calibration factors (`local`)."""
    span = (drift["low"], drift["high"]) if drift is not None and drift["applied"] else None
    if local:
        low, high = span or (1.0, 1.0)
        span = (min(low, *local), max(high, *local))
    got = judge(base, new, metric, threshold, alpha)
    if isinstance(got, str):
        return got
    got = with_offsets(got, base, metric.per_process or metric.column)
    if span is None:
        return got
    times = got.ratio if metric.higher_is_worse else 1 / got.ratio
    factor = min(max(times, span[0]), span[1])
    at_factor = judge(base, scaled(new, factor), metric, threshold, alpha)
    got = replace(at_factor, machine_factor=factor, run_var=got.run_var, run_df=got.run_df)
    if local:
        got.test += (
            f"; its own processes' calibrations read new/base {' and '.join(f'{f:.3f}' for f in local)}"
        )
    return got


def judge_at_sentinel(
    base: dict[str, Any], new: dict[str, Any], speed: float, metric: Metric, threshold: float, alpha: float
) -> CaseDelta | str:
    """judge() on both rows' relative latencies put back at BASE's sentinel speed; the line keeps the raw
    medians and names the factor the machine's speed accounted for."""
    raw = judge(base, new, metric, threshold, alpha)
    if isinstance(raw, str):
        return raw
    got = judge(at_sentinel(base, speed, metric), at_sentinel(new, speed, metric), metric, threshold, alpha)
    if isinstance(got, str):
        return got
    times = raw.ratio / got.ratio if metric.higher_is_worse else got.ratio / raw.ratio
    got.test += (
        f", {SENTINEL_TEST}, at base's sentinel speed (raw: {fmt_value(raw.base, metric.name)} -> "
        f"{fmt_value(raw.new, metric.name)}, ratio {raw.ratio:.3f}; the machine's speed accounted for x{times:.3f})"
    )
    return with_offsets(replace(got, machine_factor=times), base, "latency_rel_process")
