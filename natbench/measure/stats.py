"""Uncertainty across fresh processes: the interval of a median, of a paired ratio, of a power-law exponent.

Every interval here is over *processes*: each process gives one value (its median latency, its peak memory,
its A/B ratio), so the between-process and between-minute noise of a shared machine is what the interval
describes, not the spread of the samples inside one run. Medians and fits: a percentile bootstrap
(scipy.stats.bootstrap); paired ratios: a Student t interval of the mean log ratio (see ratio_ci). Several
sweeps of the same cases: a random-effects mean of the sweeps' values (replicate_ci).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
N_RESAMPLES = 2000
SEED = 12345  # fixed: the same values always give the same interval


def _values(values) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    return arr[np.isfinite(arr)]


def median_known(values: Sequence[float | None]) -> float | None:
    """The median of the values that are not None (None when there is none)."""
    known = [float(v) for v in values if v is not None]
    return float(np.median(known)) if known else None


def _bootstrap(
    data: tuple[np.ndarray, ...], statistic, confidence: float, vectorized: bool = False, paired: bool = False
) -> tuple[float, float]:
    """vectorized: `statistic(*samples, axis=-1)` takes the resamples along a leading axis at once.
    paired: the samples' i-th values belong together (one process) and are resampled together."""
    from scipy import stats

    res = stats.bootstrap(
        data,
        statistic,
        vectorized=vectorized,
        paired=paired,
        n_resamples=N_RESAMPLES,
        confidence_level=confidence,
        method="percentile",  # BCa is undefined for the few, often tied, values of a few processes
        random_state=np.random.default_rng(SEED),
    )
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def median_ci(values: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(median, low, high): the median of per-process values and its bootstrap interval over processes.

    One value gives (v, v, v) with no width: callers must treat repeats < 2 as "no interval".
    """
    arr = _values(values)
    if not len(arr):
        raise ValueError("median_ci needs at least one finite value")
    med = float(np.median(arr))
    if len(arr) < 2 or np.ptp(arr) == 0:
        return med, med, med
    low, high = _bootstrap((arr,), np.median, confidence)
    return med, min(low, med), max(high, med)


def ratio_ci(ratios: Sequence[float], confidence: float = CONFIDENCE) -> tuple[float, float, float]:
    """(ratio, low, high) of per-process paired ratios: their geometric mean and its Student t interval
    (scipy.stats.ttest_1samp on the log ratios).

    Not the bootstrap of the median used for latencies: with five processes that interval is their min..max,
    whose width rests on two values. A pair's rounds alternate, so a busy spell moves both members and mostly
    cancels in their ratio, which a mean then need not guard against as a latency's median must. Over 8
    cpu-quick runs (6 pairs, 336 run pairs) another run's centre fell inside this interval 80 % of the time
    (83 % is what a 95 % interval gives), inside min..max 76 %; the widths were alike (median half-width 4.2 %
    and 4.4 %). Over 8 later sweeps: 66 % and 64 % (half-widths 3.4 % and 3.3 %): a sweep's processes share its
    minutes of the machine, which no interval from one sweep sees (replicate_ci combines several).
    """
    from scipy import stats

    arr = _values(ratios)
    if not len(arr) or (arr <= 0).any():
        raise ValueError("paired ratios must be positive numbers")
    logs = np.log(arr)
    centre = math.exp(float(logs.mean()))
    if len(logs) < 2 or np.ptp(logs) < 1e-12:  # equal up to rounding: the t statistic is noise
        return centre, centre, centre
    ci = stats.ttest_1samp(logs, 0.0).confidence_interval(confidence)
    return centre, math.exp(float(ci.low)), math.exp(float(ci.high))


@dataclass(frozen=True)
class Fit:
    """log(y) = intercept + exponent * log(x); [ci_low, ci_high] is the 95 % interval of the exponent."""

    exponent: float
    ci_low: float
    ci_high: float
    n_sizes: int  # distinct x values fitted
    points: int  # measurements used (after de-duplication)
    processes: int  # per-process values behind them (== points when rows carry no per-process values)
    intercept: float
    r2: float
    stderr: float
    method: str  # "bootstrap over processes" or "ols t-interval" (one value per size: no process spread)


def _slope(lx: np.ndarray, ly: np.ndarray) -> tuple[float, float]:
    slope, intercept = np.polyfit(lx, ly, 1)
    return float(slope), float(intercept)


def _median_slopes(lx: np.ndarray, *samples: np.ndarray, axis: int = -1) -> np.ndarray:
    """Least-squares slopes of the samples' medians against lx, for every resample at once."""
    centre = np.stack([np.median(s, axis=axis) for s in samples], axis=-1)  # (..., sizes)
    dx = lx - lx.mean()
    return ((centre - centre.mean(axis=-1, keepdims=True)) * dx).sum(axis=-1) / (dx * dx).sum()


def fit_power_law(
    x,
    y,
    groups=None,
    confidence: float = CONFIDENCE,
    min_sizes: int = 5,
) -> Fit:
    """Fit y = c * x**exponent over sizes x.

    y[i]: one value, or the per-process values (a list: `latency_process_ms`) measured at x[i].
    groups[i] (optional): what identifies measurement i (e.g. "case_id@timestamp"); measurements with the same
    x and group are one measurement seen twice (the same row read from several results directories) and
    count once, so duplicates do not narrow the interval.
    Interval: when some size has >= 2 per-process values, a bootstrap that resamples the processes of each
    size independently (scipy.stats.bootstrap, unpaired samples) and refits; otherwise the OLS t-interval.
    """
    xs = [float(v) for v in np.asarray(x, dtype=object).ravel()]
    ys = list(y)
    if len(xs) != len(ys):
        raise ValueError(f"x and y must have the same length, got {len(xs)} and {len(ys)}")
    labels = list(groups) if groups is not None else [None] * len(xs)
    if len(labels) != len(xs):
        raise ValueError(f"groups must have one label per x, got {len(labels)} for {len(xs)}")
    per_size: dict[float, list[float]] = {}
    seen: set = set()
    points = 0
    for xi, yi, gi in zip(xs, ys, labels):
        if gi is not None:
            if (xi, gi) in seen:
                continue
            seen.add((xi, gi))
        vals = [float(v) for v in (yi if isinstance(yi, (list, tuple, np.ndarray)) else [yi])]
        if xi <= 0 or any(not (v > 0) for v in vals) or not vals:
            raise ValueError("a power-law fit needs positive x and y (log scale)")
        per_size.setdefault(xi, []).extend(vals)
        points += 1
    if len(per_size) < min_sizes:
        raise ValueError(
            f"a power-law fit needs >= {min_sizes} distinct sizes, got {len(per_size)}; "
            "measure more sizes (grid values) for this group"
        )
    sizes = sorted(per_size)
    lx = np.log(np.asarray(sizes))
    samples = [np.log(np.asarray(per_size[s])) for s in sizes]
    # sizes with one process keep their value in every resample
    data = tuple(s if len(s) >= 2 else np.repeat(s, 2) for s in samples)
    spread = any(len(s) >= 2 and np.ptp(s) > 0 for s in samples)
    centre = np.asarray([np.median(s) for s in samples])
    method = ("bootstrap over processes", "ols t-interval (one value per size)")
    return _fit(
        lx, centre, data if spread else None, False, confidence, method, points, sum(map(len, samples))
    )


def _fit(
    lx, centre, data, paired: bool, confidence: float, method: tuple[str, str], points: int, processes: int
):
    """The Fit through the sizes' `centre` values (logs); its interval a bootstrap of `data` (one sample of
    per-process logs per size) when given, else the OLS t-interval. method: (bootstrap's, t-interval's)."""
    from scipy import stats

    exponent, intercept = _slope(lx, centre)
    reg = stats.linregress(lx, centre)  # r2 / stderr describe the fit through the centres
    if data is not None:
        low, high = _bootstrap(
            data,
            lambda *ss, axis=-1: _median_slopes(lx, *ss, axis=axis),
            confidence,
            vectorized=True,
            paired=paired,
        )
        how = method[0]
    else:
        half = float(stats.t.ppf(0.5 + confidence / 2, len(lx) - 2) * reg.stderr)
        low, high, how = exponent - half, exponent + half, method[1]
    return Fit(
        exponent=exponent,
        ci_low=min(low, exponent),
        ci_high=max(high, exponent),
        n_sizes=len(lx),
        points=points,
        processes=processes,
        intercept=intercept,
        r2=float(reg.rvalue**2),
        stderr=float(reg.stderr),
        method=how,
    )


def fit_power_law_paired(x, per_process, confidence: float = CONFIDENCE, min_sizes: int = 5) -> Fit:
    """Fit y = c * x**exponent where every process measured every size: per_process[p][i] is process p's value
    at x[i] (members timed interleaved, natbench.measure.group).

    A slow spell in one process moves all its sizes alike: each process's log values are taken relative to
    their own mean, the exponent is the slope through the sizes' medians of those, and the interval a
    bootstrap that resamples whole processes (scipy.stats.bootstrap, paired), so the spell cancels in both.
    """
    xs = np.asarray([float(v) for v in x])
    arr = np.asarray([[float(v) for v in row] for row in per_process], dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != len(xs) or not len(arr):
        raise ValueError(f"per_process needs one row of {len(xs)} values (one per size) for each process")
    if (xs <= 0).any() or not (arr > 0).all():
        raise ValueError("a power-law fit needs positive x and y (log scale)")
    if len(set(xs.tolist())) != len(xs):
        raise ValueError(f"a paired power-law fit needs distinct sizes, got {xs.tolist()}")
    if len(xs) < min_sizes:
        raise ValueError(
            f"a power-law fit needs >= {min_sizes} distinct sizes, got {len(xs)}; "
            "measure more sizes (grid values) for this group"
        )
    order = np.argsort(xs)
    lx, logs = np.log(xs[order]), np.log(arr[:, order])
    relative = logs - logs.mean(axis=1, keepdims=True)
    spread = len(relative) >= 2 and np.ptp(relative, axis=0).any()
    data = tuple(relative[:, i] for i in range(len(lx))) if spread else None
    method = (
        "bootstrap over processes, paired (sizes timed interleaved in each)",
        "ols t-interval (one process)",
    )
    f = _fit(lx, np.median(relative, axis=0), data, True, confidence, method, len(lx), len(relative))
    # the slope is of the relative logs; the intercept of the sizes' median logs
    intercept = float(np.median(logs, axis=0).mean() - f.exponent * lx.mean())
    return dataclasses.replace(f, intercept=intercept)


@dataclass(frozen=True)
class Replicated:
    """One value from several sweeps' values and their own standard errors (a random-effects mean)."""

    centre: float
    low: float
    high: float
    between_sd: float  # the sweeps' spread beyond their own errors (DerSimonian-Laird tau)
    sweeps: int


def replicate_ci(
    values: Sequence[float], errors: Sequence[float], confidence: float = CONFIDENCE
) -> Replicated:
    """Combine k >= 2 sweeps' estimates (values[i] with standard error errors[i], on a scale where errors are
    symmetric, e.g. log) into one with a 95 % interval that carries the variation between sweeps.

    A sweep's processes share its minutes of the machine, so sweeps differ by more than their own intervals say
    (a paired ratio moved 4 % between sweeps whose intervals were +-2 %): sweeps are replicates, not more
    processes. DerSimonian-Laird's between-sweep variance, then the Hartung-Knapp(-Sidik-Jonkman) interval:
    Student t on k - 1 degrees of freedom, never narrower than the fixed-effect one (Roever et al. 2015), so two
    sweeps give a wide interval. Sweeps that all have no error (exact readings) give their plain t interval; one
    without an error among others counts with the largest of theirs.
    """
    from scipy import stats

    y = np.asarray([float(v) for v in values])
    se = np.asarray([float(e) for e in errors])
    k = len(y)
    if k < 2 or len(se) != k:
        raise ValueError("replicate_ci needs >= 2 values, each with its standard error")
    if not (np.isfinite(y).all() and np.isfinite(se).all() and (se >= 0).all()):
        raise ValueError("replicate_ci needs finite values and non-negative finite errors")
    t = float(stats.t.ppf(0.5 + confidence / 2, k - 1))
    if (se == 0).all():
        centre, sd = float(y.mean()), float(y.std(ddof=1))
        half = t * sd / math.sqrt(k)
        return Replicated(centre, centre - half, centre + half, sd, k)
    se = np.where(se == 0, se.max(), se)  # a sweep without a band counts with the widest of the others
    w = 1 / se**2
    fixed = float((w * y).sum() / w.sum())
    q = float((w * (y - fixed) ** 2).sum())
    tau2 = max(0.0, (q - (k - 1)) / float(w.sum() - (w**2).sum() / w.sum()))
    ws = 1 / (se**2 + tau2)
    centre = float((ws * y).sum() / ws.sum())
    spread = float((ws * (y - centre) ** 2).sum()) / (k - 1)
    half = t * math.sqrt(max(spread, 1.0) / float(ws.sum()))
    return Replicated(centre, centre - half, centre + half, math.sqrt(tau2), k)
