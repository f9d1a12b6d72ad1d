"""The machine's drift floor: how far a run's median moves between runs beyond what its own processes show.

A shared machine's speed for the same call drifts over tens of seconds (tiled NA 56x56: per-process medians of
5.8-8.5 ms in streaks while the matmul calibration stayed flat). R processes run back to back within 2 s all
see one moment, so their bootstrap interval is too narrow for a run a minute later. `natbench noise` measures
the drift once per machine: a few probe ops, each run as `natbench run` does, in rounds spread over minutes.
Per probe, the variance of the rounds' log medians minus the mean squared standard error of one round's median
(from its own interval) is the drift variance; the floor is the median of the probes' drift SDs.

A row whose processes spanned less time than the profile's rounds gets the floor added (in quadrature, on the
log scale) to its latency interval; `latency_drift_cv` and `latency_ci_method` say so. A sweep's case spreads
its processes over the sweep's minutes and carries the drift in its own spread: it gets no floor.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Z95 = 1.959963984540054  # two-sided 95 %: the rows' intervals are 95 %
PROFILE_ENV = (
    "NATBENCH_DRIFT_PROFILE"  # a profile file to use instead of the per-machine one; "none": no floor
)

# Ops that differ in what limits them (the tiled kernel's copies, window attention's partitions, a dense
# SDPA), at sizes apart from the benchmarks that check the floor (56x56, 112x112).
PROBES: dict[str, dict[str, Any]] = {
    "na-64": {
        "target": "na",
        "backend": "tiled",
        "resolution": 64,
        "kernel_size": 5,
        "heads": 4,
        "head_dim": 32,
    },
    "window-64": {
        "target": "window",
        "shifted": True,
        "resolution": 64,
        "kernel_size": 8,
        "heads": 4,
        "head_dim": 32,
    },
    "full-32": {"target": "full", "resolution": 32, "heads": 4, "head_dim": 32},
}
DEFAULT_ROUNDS = 8
DEFAULT_SPAN_S = 120.0


@dataclass(frozen=True)
class ProbeDrift:
    medians_ms: list[float]  # one per round
    standard_errors: list[float]  # of each round's log median, from its 95 % interval
    between_sd: float  # SD of the rounds' log medians
    drift_sd: float  # sqrt(max(0, between^2 - mean(se^2)))


@dataclass(frozen=True)
class DriftProfile:
    floor: float  # log-scale SD a run's median drifts by beyond its processes' spread (0.03 ~ 3 %)
    span_s: float  # seconds the rounds spanned: shorter runs cannot see this drift
    rounds: int
    repeats: int
    threads: int | None
    machine: str
    host: str
    measured_at: str
    probes: dict[str, ProbeDrift] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DriftProfile:
        probes = {k: ProbeDrift(**v) for k, v in (data.get("probes") or {}).items()}
        floor = float(data["floor"])
        if not (math.isfinite(floor) and floor >= 0):
            raise ValueError(f"a drift profile's floor must be a finite number >= 0, got {floor}")
        return cls(**{**data, "floor": floor, "probes": probes})


def standard_error(median: float, low: float, high: float) -> float:
    """SE of log(median) from its 95 % interval (the wider side, so a skewed interval is not under-read)."""
    if not (0 < low <= median <= high):
        return 0.0
    return max(math.log(median / low), math.log(high / median)) / Z95


def probe_drift(medians: Sequence[float], standard_errors: Sequence[float]) -> ProbeDrift:
    if len(medians) < 2 or len(medians) != len(standard_errors):
        raise ValueError("drift needs >= 2 rounds, each with a median and its standard error")
    logs = [math.log(m) for m in medians]
    between = statistics.stdev(logs)
    within = statistics.fmean(se * se for se in standard_errors)
    return ProbeDrift(
        [float(m) for m in medians],
        [float(s) for s in standard_errors],
        between,
        math.sqrt(max(0.0, between * between - within)),
    )


def widen(row: dict[str, Any], profile: DriftProfile | None) -> dict[str, Any]:
    """Add the profile's floor to an ok row's latency interval when its processes spanned less than the
    profile's rounds (in place); record which interval the row carries."""
    if row.get("status") != "ok" or row.get("latency_ms") is None or row.get("kind") == "pair":
        return row
    row["latency_drift_cv"] = 0.0
    row["latency_ci_method"] = "bootstrap over processes"
    span = row.get("latency_span_s")
    if profile is None or profile.floor <= 0 or (span is not None and span >= profile.span_s):
        return row
    med, low, high = row["latency_ms"], row["latency_ci_low_ms"], row["latency_ci_high_ms"]
    if not (0 < low <= med <= high):
        return row
    extra = (Z95 * profile.floor) ** 2
    down = math.sqrt(math.log(med / low) ** 2 + extra)
    up = math.sqrt(math.log(high / med) ** 2 + extra)
    row.update(
        latency_process_ci_low_ms=low,
        latency_process_ci_high_ms=high,
        latency_ci_low_ms=med * math.exp(-down),
        latency_ci_high_ms=med * math.exp(up),
        latency_drift_cv=profile.floor,
        latency_ci_method=(
            f"bootstrap over processes + machine drift {profile.floor:.1%} "
            f"(natbench noise, {profile.measured_at[:10]})"
        ),
    )
    return row


def cache_dir() -> Path:
    base = os.environ.get("NATBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "natbench"
    )
    return Path(base)


def _this_machine(threads: int | None, env: dict[str, Any] | None = None) -> tuple[str, str]:
    import platform

    from natbench.env import collect, machine_key

    return machine_key(env or collect(), "cpu", threads), platform.node()


def profile_path(machine: str, host: str) -> Path:
    key = hashlib.sha1(f"{host}|{machine}".encode()).hexdigest()[:16]
    return cache_dir() / "drift" / f"{key}.json"


def save(profile: DriftProfile, path: Path | None = None) -> Path:
    path = path or profile_path(profile.machine, profile.host)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(profile.to_dict(), indent=1, sort_keys=True))
    tmp.replace(path)
    return path


def load(threads: int | None = None, env: dict[str, Any] | None = None) -> DriftProfile | None:
    """This machine's profile for `threads` (NATBENCH_DRIFT_PROFILE: a file, or "none"); None if never measured.

    A profile file that cannot be read is an error: a silently missing floor would narrow every interval."""
    forced = os.environ.get(PROFILE_ENV)
    if forced and forced.lower() == "none":
        return None
    if forced:
        path = Path(forced)
        if not path.is_file():
            raise ValueError(f"{PROFILE_ENV}={forced}: no such file; run `natbench noise --output {forced}`")
    else:
        path = profile_path(*_this_machine(threads, env))
        if not path.is_file():
            return None
    try:
        return DriftProfile.from_dict(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"drift profile {path} is unreadable ({exc}); run `natbench noise` again") from exc


RunCase = Callable[[dict[str, Any]], dict[str, Any]]


def measure(
    run_case: RunCase,
    rounds: int = DEFAULT_ROUNDS,
    span: float = DEFAULT_SPAN_S,
    probes: dict[str, dict[str, Any]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[dict[str, ProbeDrift], float]:
    """Run every probe once per round, rounds spread over `span` seconds; (drift per probe, seconds spanned).

    run_case(spec) -> an ok row with latency_ms and its interval (run_repeated); a failed probe is an error."""
    if rounds < 2:
        raise ValueError(f"rounds must be >= 2 (drift is the spread between rounds), got {rounds}")
    if not 0 <= span < float("inf"):
        raise ValueError(f"span must be >= 0 seconds and finite, got {span}")
    probes = PROBES if probes is None else probes
    seen: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in probes}
    start = time.monotonic()
    for i in range(rounds):
        if i:
            time.sleep(max(0.0, start + span * i / (rounds - 1) - time.monotonic()))
        for name, spec in probes.items():
            row = run_case({**spec, "device": "cpu"})
            if row.get("status") != "ok":
                raise RuntimeError(f"drift probe {name} failed: {row.get('status')}: {row.get('error')}")
            med = float(row["latency_ms"])
            seen[name][0].append(med)
            seen[name][1].append(standard_error(med, row["latency_ci_low_ms"], row["latency_ci_high_ms"]))
            if progress:
                progress(f"round {i + 1}/{rounds} {name}: {med:.3f} ms")
    spanned = time.monotonic() - start
    return {name: probe_drift(*got) for name, got in seen.items()}, spanned


def build_profile(
    drifts: dict[str, ProbeDrift], spanned: float, rounds: int, repeats: int, threads: int | None
) -> DriftProfile:
    machine, host = _this_machine(threads)
    return DriftProfile(
        floor=statistics.median(d.drift_sd for d in drifts.values()),
        span_s=round(spanned, 1),
        rounds=rounds,
        repeats=repeats,
        threads=threads,
        machine=machine,
        host=host,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        probes=drifts,
    )
