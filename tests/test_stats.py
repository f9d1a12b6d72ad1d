"""Intervals over processes, paired ratios and the one power-law fitter (natbench.measure.stats)."""

from __future__ import annotations

import numpy as np
import pytest

from natbench.claims.scaling import fit_power_law as claims_fit
from natbench.measure.stats import fit_power_law, median_ci, ratio_ci


def test_median_ci_brackets_the_median_within_the_values():
    values = [4.4, 7.9, 4.5, 7.6, 6.4, 4.7]
    med, low, high = median_ci(values)
    assert med == pytest.approx(np.median(values))
    assert min(values) <= low <= med <= high <= max(values)
    assert median_ci(values) == (med, low, high)  # seeded: the same values give the same interval
    assert median_ci([3.0]) == (3.0, 3.0, 3.0)
    assert median_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    with pytest.raises(ValueError, match="at least one"):
        median_ci([])


def test_interval_widens_with_the_spread_between_processes():
    tight = median_ci([10.0, 10.1, 9.9, 10.05, 9.95])
    wide = median_ci([10.0, 13.0, 7.0, 12.0, 8.0])
    assert wide[2] - wide[1] > 5 * (tight[2] - tight[1])


def test_ratio_ci_is_symmetric_in_log_and_rejects_non_positive():
    r, low, high = ratio_ci([2.0, 2.2, 1.8, 2.1, 1.9])
    assert low <= r <= high and r == pytest.approx(2.0, rel=0.05)
    inv = ratio_ci([1 / v for v in (2.0, 2.2, 1.8, 2.1, 1.9)])
    assert inv[0] == pytest.approx(1 / r) and inv[1] == pytest.approx(1 / high)
    with pytest.raises(ValueError, match="positive"):
        ratio_ci([1.0, 0.0])


def test_ratio_ci_is_the_t_interval_of_the_mean_log_ratio():
    from scipy import stats

    r, low, high = ratio_ci([1.0, 2.0, 4.0])  # log ratios 0, ln 2, 2 ln 2
    half = stats.t.ppf(0.975, 2) * np.log(2) / np.sqrt(3)
    assert r == pytest.approx(2.0) and low == pytest.approx(2.0 * np.exp(-half))
    assert high == pytest.approx(2.0 * np.exp(half)) and high > 4.0  # wider than min..max with three values
    assert ratio_ci([1.5, 1.5]) == (1.5, 1.5, 1.5)


def _processes(sizes, exponent, cv, n=4, seed=0):
    rng = np.random.default_rng(seed)
    return [list(s**exponent * (1 + cv * rng.standard_normal(n))) for s in sizes]


def test_fit_bootstraps_over_processes():
    sizes = [196, 784, 3136, 12544, 50176]
    fit = fit_power_law(sizes, _processes(sizes, 1.0, 0.05))
    assert fit.method == "bootstrap over processes" and fit.n_sizes == 5 and fit.processes == 20
    assert fit.ci_low <= 1.0 <= fit.ci_high and fit.ci_low <= fit.exponent <= fit.ci_high
    noisier = fit_power_law(sizes, _processes(sizes, 1.0, 0.3))
    assert noisier.ci_high - noisier.ci_low > fit.ci_high - fit.ci_low


def test_duplicated_rows_do_not_narrow_the_interval():
    sizes = [1, 2, 4, 8, 16, 32]
    ys = _processes(sizes, 2.0, 0.1, n=3)
    once = fit_power_law(sizes, ys, groups=[f"row{i}" for i in range(6)])
    # the same rows read from two --results directories
    twice = fit_power_law(sizes * 2, ys * 2, groups=[f"row{i}" for i in range(6)] * 2)
    assert (twice.ci_low, twice.ci_high, twice.points) == (once.ci_low, once.ci_high, once.points)
    naive = fit_power_law(sizes * 2, ys * 2)  # without labels they would count twice
    assert naive.points == 12


def test_fit_needs_enough_sizes_and_positive_values():
    with pytest.raises(ValueError, match=">= 5 distinct sizes, got 4"):
        fit_power_law([1, 2, 3, 4], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1, 2, 3, 4, 5], [1, 2, 0, 4, 5])


def test_one_value_per_size_falls_back_to_the_ols_interval_and_claims_keep_their_api():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    y = 3 * x**1.5 * np.array([1.0, 1.02, 0.99, 1.01])
    fit = claims_fit(x, y)  # claims keep fitting 4 sizes with scalar rows
    assert fit.method.startswith("ols") and fit.points == 4
    assert fit.exponent == pytest.approx(1.5, abs=0.05) and fit.ci_low < fit.exponent < fit.ci_high
    assert fit.r2 > 0.99 and fit.stderr > 0


def test_claims_fit_counts_a_row_read_twice_once():
    x = [1.0, 2.0, 4.0, 8.0, 16.0]
    y = [1.0, 2.1, 3.9, 8.2, 15.8]
    once = claims_fit(x, y)
    twice = claims_fit(x + x, y + y)
    assert (
        (twice.points, twice.ci_low, twice.ci_high)
        == (once.points, once.ci_low, once.ci_high)
        == (5, once.ci_low, once.ci_high)
    )
