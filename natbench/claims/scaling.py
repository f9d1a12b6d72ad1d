"""Power-law fits: the exponent of time or memory in the number of tokens, with a 95 % confidence interval."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerFit:
    exponent: float
    stderr: float
    ci_low: float
    ci_high: float
    intercept: float
    r2: float
    points: int


def fit_power_law(x, y, confidence: float = 0.95) -> PowerFit:
    """Least-squares fit of log(y) = a + b log(x); b's CI from its standard error and Student's t (n - 2 dof)."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D and the same length, got shapes {x.shape} and {y.shape}")
    if (x <= 0).any() or (y <= 0).any():
        raise ValueError("a power-law fit needs positive x and y (log scale)")
    if len(np.unique(x)) < 3:
        raise ValueError(
            f"a power-law fit with a confidence interval needs >= 3 distinct x values, got {len(np.unique(x))}"
        )
    fit = stats.linregress(np.log(x), np.log(y))
    t = stats.t.ppf(0.5 + confidence / 2, len(x) - 2)
    half = float(t * fit.stderr)
    return PowerFit(
        exponent=float(fit.slope),
        stderr=float(fit.stderr),
        ci_low=float(fit.slope) - half,
        ci_high=float(fit.slope) + half,
        intercept=float(fit.intercept),
        r2=float(fit.rvalue**2),
        points=len(x),
    )
