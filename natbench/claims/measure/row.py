"""`row` (a column of the selected rows) and `top1` (accuracy rows with a named checkpoint and the papers'
evaluation recipe, with the binomial band of a subset of the 50,000 validation images)."""

from __future__ import annotations

import math

from natbench.claims.measure.bands import describe, value_band
from natbench.claims.measure.outcome import Measurement, Outcome, error, skip
from natbench.claims.measure.rows import is_missing, select
from natbench.claims.schema import Claim

IMAGENET_VAL_IMAGES = 50_000
# the papers' recipe (timm validate): crop 87.5 % of the short side, bicubic
RECIPE_MARKS = ("crop_pct=0.875", "interpolation=bicubic")


def top1_band(row, value: float) -> tuple[float, float]:
    """95 % band of top-1 measured on a subset of the 50,000 val images (finite-population corrected)."""
    n = row.get("count")
    if is_missing(n) or int(n) >= IMAGENET_VAL_IMAGES or int(n) <= 0:
        return value, value
    n = int(n)
    p = value / 100
    se = math.sqrt(p * (1 - p) / n * (IMAGENET_VAL_IMAGES - n) / (IMAGENET_VAL_IMAGES - 1)) * 100
    return value - 1.96 * se, value + 1.96 * se


def _paper_recipe(row) -> bool:
    recipe = row.get("recipe")
    if recipe is None or is_missing(recipe):  # results without the column: the accuracy CLI's own recipe
        return True
    return all(mark in str(recipe) for mark in RECIPE_MARKS)


def measure_row(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"))
    if why:
        return why
    name = m["field"]
    out = []
    for _, row in rows.iterrows():
        if is_missing(row.get(name)):
            continue
        v, lo, hi, how = value_band(row, name)
        label = describe(row, ("device_name", "dtype", "batch"))
        out.append(
            Measurement(label, v, lo, hi, f"{name}={v:.4g} from {label}", [str(row.get("case_id"))], how)
        )
    if not out:
        return error(f"the selected rows have no {name} values")
    return Outcome(measurements=out)


def measure_top1(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"))
    if why:
        return why
    named = rows[rows["checkpoint"].map(lambda c: isinstance(c, str) and bool(c.strip()))]
    named = named[named.apply(_paper_recipe, axis=1)] if len(named) else named
    if len(named) == 0:
        return skip(
            "needs ImageNet + checkpoints",
            f"{len(rows)} accuracy row(s) but none with a named checkpoint and the papers' recipe "
            f"({', '.join(RECIPE_MARKS)})",
        )
    out = []
    for _, row in named.iterrows():
        if is_missing(row.get("top1")):
            continue
        v = float(row["top1"])
        lo, hi = top1_band(row, v)
        label = describe(row, ("checkpoint", "count"))
        out.append(
            Measurement(
                label,
                v,
                lo,
                hi,
                f"top1={v:.4g} from {label}",
                [str(row.get("case_id"))],
                "95 % binomial band of the images evaluated",
            )
        )
    if not out:
        return error("the accuracy rows have no top1 values")
    return Outcome(measurements=out)
