"""Power-law fits for claims: the one fitter is natbench.measure.stats.fit_power_law; this keeps the old name."""

from __future__ import annotations

from natbench.measure.stats import Fit

PowerFit = Fit


def fit_power_law(x, y, confidence: float = 0.95, groups=None, min_sizes: int = 3) -> Fit:
    """natbench.measure.stats.fit_power_law with the claims' historic minimum of 3 sizes."""
    from natbench.measure.stats import fit_power_law as fit

    return fit(x, y, groups=groups, confidence=confidence, min_sizes=min_sizes)
