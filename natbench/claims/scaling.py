"""Power-law fits for claims: the one fitter is natbench.measure.stats.fit_power_law; this keeps the old name."""

from __future__ import annotations

from natbench.measure.stats import Fit

PowerFit = Fit


def fit_power_law(x, y, confidence: float = 0.95, groups=None, min_sizes: int = 3) -> Fit:
    """natbench.measure.stats.fit_power_law with the claims' historic minimum of 3 sizes.

    Without `groups`, points with the same x and the same scalar y count once: the same row read from
    several --results directories (two independent timings never agree to the last bit), so duplicates
    cannot narrow the interval.
    """
    from natbench.measure.stats import fit_power_law as fit

    xs, ys = list(x), list(y)
    if groups is None and all(not isinstance(v, (list, tuple)) for v in ys):
        groups = [repr((float(a), float(b))) for a, b in zip(xs, ys)]
    return fit(xs, ys, groups=groups, confidence=confidence, min_sizes=min_sizes)
