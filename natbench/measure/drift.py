"""The machine's drift floor: how far a run's median moves between runs beyond what its own processes show.

A shared machine's speed for the same call drifts over tens of seconds (tiled NA 56x56: per-process medians of
5.8-8.5 ms in streaks while the matmul calibration stayed flat). R processes run back to back within 2 s all
see one moment, so their bootstrap interval is too narrow for a run a minute later. `natbench noise` measures
the drift once per machine: a few probe ops, each run as `natbench run` does, in rounds spread over minutes.
Per probe, the variance of the rounds' log medians minus the mean squared standard error of one round's
median (from its own interval) is the drift variance. Ops drift apart (one spell: window attention 5.3 %, tiled
NA and dense attention 0.0 %), so a row takes its own op family's probe (at least the probes' median, the
profile's `floor`), and any other op (models, layers) the largest probe's.

One profile is one spell: on the Intel VM two `natbench noise` runs 12 minutes apart measured 8.4 % and 3.0 %
(the probes' median), and runs paced over the next minutes drifted by 6.5-9.1 %. So each new profile keeps the
drifts of up to MAX_EARLIER earlier ones of the machine (`earlier`; `natbench noise --fresh` drops them) and a
row takes the pooled drift, the root mean square over them (pooled variances), not the newest spell's alone.

A row whose processes spanned less time than the profile's rounds gets that floor added (in quadrature, on the
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
from statistics import NormalDist
from typing import Any

from natbench.measure.stats import CONFIDENCE

Z95 = NormalDist().inv_cdf(0.5 + CONFIDENCE / 2)  # the rows' intervals are CONFIDENCE (95 %) intervals
# a profile file to use instead of this machine's; "none": no floor
PROFILE_ENV = "NATBENCH_DRIFT_PROFILE"

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
MAX_EARLIER = 7  # earlier measurements a profile pools with its own (8 spells in all)
DEFAULT_SPAN_S = 120.0
MAX_SPAN_S = 24 * 3600.0


@dataclass(frozen=True)
class ProbeDrift:
    medians_ms: list[float]  # one per round
    standard_errors: list[float]  # of each round's log median, from its 95 % interval
    between_sd: float  # SD of the rounds' log medians (bursts included)
    drift_sd: float  # sqrt(max(0, between^2 - mean(se^2)))


@dataclass(frozen=True)
class EarlierDrift:
    """What an earlier profile of the machine measured, kept to pool with the newest."""

    measured_at: str
    span_s: float
    floor: float
    probes: dict[str, float] = field(default_factory=dict)  # drift_sd per probe


def rms(values: Sequence[float]) -> float:
    """Pooled SD of drifts measured with equal rounds: the root mean square."""
    return math.sqrt(statistics.fmean(v * v for v in values))


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
    earlier: list[EarlierDrift] = field(default_factory=list)  # newest first

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> EarlierDrift:
        return EarlierDrift(
            self.measured_at, self.span_s, self.floor, {n: d.drift_sd for n, d in self.probes.items()}
        )

    @property
    def pooled_floor(self) -> float:
        """The probes' median drift, pooled over this and the earlier measurements."""
        return rms([self.floor] + [e.floor for e in self.earlier])

    def probe_drift(self, name: str) -> float:
        """Probe `name`'s drift pooled over the measurements that ran it."""
        return rms([self.probes[name].drift_sd] + [e.probes[name] for e in self.earlier if name in e.probes])

    def floor_for(self, target: str | None) -> tuple[float, str]:
        """(drift, where it comes from) for a row of `target`: the probe of its op family ("na", "window",
        "full") but at least the probes' median, else the largest probe's drift, else (a profile without
        probes) the profile's floor; each pooled over the earlier measurements."""
        pooled = f", pooled over {1 + len(self.earlier)} measurements" if self.earlier else ""
        own = [self.probe_drift(n) for n in self.probes if PROBES.get(n, {}).get("target") == target]
        if own:
            # An SD from 8 rounds, net of their own errors, can read 0 in a spell that still drifts: never
            # below the machine's level (the probes' median).
            return max(*own, self.pooled_floor), f"its op's probe, {target}, or the probes' median{pooled}"
        if self.probes:
            name = max(self.probes, key=self.probe_drift)
            return self.probe_drift(name), f"the largest probe, {name}{pooled}"
        return self.pooled_floor, f"the profile's floor{pooled}"

    @classmethod
    def from_dict(cls, data: Any) -> DriftProfile:
        """A profile from its JSON; ValueError naming the field that is wrong."""
        if not isinstance(data, dict):
            raise ValueError(f"a drift profile is a JSON object, got {type(data).__name__}")
        for key in ("floor", "span_s"):
            value = data.get(key)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value < 0:
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
        for key in ("machine", "host", "measured_at"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{key} must be a string, got {data.get(key)!r}")
        probes = data.get("probes") or {}
        if not isinstance(probes, dict) or not all(isinstance(v, dict) for v in probes.values()):
            raise ValueError("probes must map each probe's name to its drift")
        earlier = data.get("earlier") or []
        if not isinstance(earlier, list) or not all(_earlier_ok(e) for e in earlier):
            raise ValueError("earlier must list earlier measurements: measured_at, span_s, floor, probes")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}")
        return cls(
            **{
                **data,
                "probes": {k: ProbeDrift(**v) for k, v in probes.items()},
                "earlier": [EarlierDrift(**e) for e in earlier],
            }
        )


def _earlier_ok(entry: Any) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    return (
        isinstance(entry, dict)
        and set(entry) == {"measured_at", "span_s", "floor", "probes"}
        and isinstance(entry["measured_at"], str)
        and number(entry["span_s"])
        and number(entry["floor"])
        and isinstance(entry["probes"], dict)
        and all(number(v) for v in entry["probes"].values())
    )


def standard_error(median: float, low: float, high: float) -> float:
    """SE of log(median) from its 95 % interval: the mean half-width (the drift is what remains after it)."""
    if not (0 < low <= median <= high):
        return 0.0
    return math.log(high / low) / (2 * Z95)


def probe_drift(medians: Sequence[float], standard_errors: Sequence[float]) -> ProbeDrift:
    """Drift from the plain SD of the rounds' log medians: rounds slowed by a burst are part of what a later
    run may meet (a floor from their MAD ignored the bursts and under-covered; see the README)."""
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


def widen(row: dict[str, Any], profile: DriftProfile | None, target: str | None = None) -> dict[str, Any]:
    """Add the drift of the row's op (`DriftProfile.floor_for`) to an ok row's latency interval when its
    processes spanned less than the profile's rounds (in place); record which interval the row carries."""
    if row.get("status") != "ok" or row.get("latency_ms") is None:
        return row
    row["latency_drift_cv"] = 0.0
    row["latency_ci_method"] = "bootstrap over processes"
    span = row.get("latency_span_s")
    # an unknown span (processes journaled before start times were kept) is a resumed sweep's: minutes long
    short = profile is not None and span is not None and span < profile.span_s
    # a single process has no interval: widening a point would invent one
    if not short or (row.get("repeats") or 0) < 2:
        return row
    floor, source = profile.floor_for(target or row.get("target"))
    med, low, high = row["latency_ms"], row["latency_ci_low_ms"], row["latency_ci_high_ms"]
    if floor <= 0 or not (0 < low <= med <= high):
        return row
    extra = (Z95 * floor) ** 2
    down = math.sqrt(math.log(med / low) ** 2 + extra)
    up = math.sqrt(math.log(high / med) ** 2 + extra)
    row.update(
        latency_process_ci_low_ms=low,
        latency_process_ci_high_ms=high,
        latency_ci_low_ms=med * math.exp(-down),
        latency_ci_high_ms=med * math.exp(up),
        latency_drift_cv=floor,
        latency_ci_method=(
            f"bootstrap over processes + machine drift {floor:.1%} ({source}; natbench noise, "
            f"{profile.measured_at[:10]})"
        ),
    )
    return row


def cache_dir() -> Path:
    base = os.environ.get("NATBENCH_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "natbench"
    )
    return Path(base)


def this_machine(threads: int | None, env: dict[str, Any] | None = None) -> tuple[str, str]:
    """(machine key, host) a profile is filed under."""
    from natbench.env import collect, machine_key

    env = env or collect()
    return machine_key(env, "cpu", threads), env["hostname"]


def profile_path(machine: str, host: str) -> Path:
    key = hashlib.sha1(f"{host}|{machine}".encode()).hexdigest()[:16]
    return cache_dir() / "drift" / f"{key}.json"


def writable(path: Path) -> str | None:
    """None if a profile can be written at `path`, else why not (checked before minutes of measuring)."""
    if path.is_dir():
        return f"{path} is a directory; give a file name"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        probe = path.parent / f".{path.name}.write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        return f"cannot write to {path.parent} ({exc.strerror or exc})"
    return None


def save(profile: DriftProfile, path: Path | None = None) -> Path:
    path = path or profile_path(profile.machine, profile.host)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    try:
        tmp.write_text(json.dumps(profile.to_dict(), indent=1, sort_keys=True))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load(
    threads: int | None = None, env: dict[str, Any] | None = None, path: str | os.PathLike | None = None
) -> DriftProfile | None:
    """The profile at `path`, or NATBENCH_DRIFT_PROFILE's (a file, or "none"), or this machine's for `threads`;
    None if never measured. A profile that cannot be read is an error: a silent miss would narrow intervals."""
    forced = str(path) if path is not None else os.environ.get(PROFILE_ENV)
    if forced and forced.lower() == "none":
        return None
    if forced:
        file = Path(forced)
        if not file.is_file():
            raise ValueError(f"{forced}: no such profile file; run `natbench noise --output {forced}`")
    else:
        file = profile_path(*this_machine(threads, env))
        try:
            if not file.is_file():
                return None
        except OSError as exc:
            raise ValueError(f"cannot read the natbench cache at {file.parent} ({exc})") from exc
    try:
        return DriftProfile.from_dict(json.loads(file.read_text()))
    except (OSError, ValueError, TypeError) as exc:
        raise ValueError(f"drift profile {file} is unreadable ({exc}); run `natbench noise` again") from exc


def other_threads(env: dict[str, Any]) -> dict[int, DriftProfile]:
    """This host's readable profiles for thread counts other than torch's, by thread count (read from the
    profile's machine key, "cpu:<model>:<N>t", which holds the count even when `threads` was left to torch)."""
    machine, host = this_machine(None, env)
    family = machine.rsplit(":", 1)[0] + ":"
    found = {}
    for file in (cache_dir() / "drift").glob("*.json"):
        try:
            profile = DriftProfile.from_dict(json.loads(file.read_text()))
        except (OSError, ValueError, TypeError):
            continue  # an unreadable profile of this thread count is load()'s error to report
        count = profile.machine.removeprefix(family).removesuffix("t")
        if profile.host == host and profile.machine != machine and profile.machine.startswith(family):
            if count.isdigit():
                found[int(count)] = profile
    return dict(sorted(found.items()))


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
    if not 0 <= span <= MAX_SPAN_S:
        raise ValueError(f"span must be 0 to {MAX_SPAN_S:g} seconds, got {span}")
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
    drifts: dict[str, ProbeDrift],
    spanned: float,
    rounds: int,
    repeats: int,
    threads: int | None,
    previous: DriftProfile | None = None,
) -> DriftProfile:
    """The new measurement, keeping `previous`'s (and its earlier ones') drifts when it is of this machine."""
    machine, host = this_machine(threads)
    same = previous is not None and (previous.machine, previous.host) == (machine, host)
    earlier = ([previous.summary(), *previous.earlier] if same else [])[:MAX_EARLIER]
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
        earlier=earlier,
    )
