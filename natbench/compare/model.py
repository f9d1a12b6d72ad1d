"""What compare works with: the metrics, one case's verdict (CaseDelta) and a whole comparison."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from natbench.results import CASE_PARAMS

DESCRIBE = ("kind", *CASE_PARAMS)
ALPHA = 0.05
THRESHOLD = 0.05
NORMALIZE = ("auto", "calibrations", "off")
MACHINE_KEYS = ("machine", "device_name", "threads")
SENTINEL_TEST = "relative to the sentinel"
CALIBRATION_COLUMNS = ("calib_process_ms", "calib_bw_process_ms")  # per process: matmul, DRAM copy


@dataclass(frozen=True)
class Metric:
    name: str
    column: str
    per_process: str | None
    unit: str
    higher_is_worse: bool


METRICS = {
    "latency": Metric("latency", "latency_ms", "latency_process_ms", "ms", True),
    "memory": Metric("memory", "peak_mem_bytes", "peak_mem_process_bytes", "bytes", True),
    "throughput": Metric("throughput", "throughput", "latency_process_ms", "img/s", False),
}


@dataclass
class CaseDelta:
    case_id: str
    describe: str
    base: float
    new: float
    ratio: float  # NEW / BASE of the metric's medians
    p_value: float | None  # one-sided Mann-Whitney U, NEW worse than BASE (None: no test possible)
    test: str  # what the verdict rests on
    base_n: int
    new_n: int
    verdict: str  # regression | improvement | unchanged
    busy: bool = False  # either row was measured on a busy machine (loadavg above its CPUs)
    machine_factor: float | None = None  # NEW's times were divided by this (machine drift), if at all
    base_runs: int = 1  # baseline runs pooled for this case
    # log(NEW / BASE) of the values' geometric means, its standard error and Welch degrees of freedom (None
    # without a spread): what between_runs weighs against the runs' scatter
    log_change: float | None = None
    change_se: float | None = None
    change_df: float | None = None
    within_scatter: bool = False  # beyond the threshold and the test, but not beyond the cases' scatter
    # this case's own offset between baseline runs (variance of log values, its degrees of freedom): see
    # case_offsets; None with one baseline run
    run_var: float | None = None
    run_df: int | None = None


@dataclass
class Comparison:
    base: str
    new: str
    metric: str
    threshold: float
    alpha: float
    cases: list[CaseDelta]
    only_in_base: list[str]
    only_in_new: list[str]
    not_comparable: list[dict[str, Any]]  # in both, but no verdict possible: each with its reason
    drift: dict[str, Any] | None = None  # calibration workload NEW / BASE, and whether it was applied
    normalize: str = "auto"  # "off": raw times, no machine drift taken out (sweep-wide or per case)
    # the runs' scatter a change must exceed, or why there is no bar (see between_runs)
    scatter: dict[str, Any] | None = None

    @property
    def regressions(self) -> list[CaseDelta]:
        return [c for c in self.cases if c.verdict == "regression"]

    @property
    def improvements(self) -> list[CaseDelta]:
        return [c for c in self.cases if c.verdict == "improvement"]

    @property
    def exit_code(self) -> int:
        if self.regressions:
            return 1
        return 0 if self.cases else 2

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "new": self.new,
            "metric": self.metric,
            "threshold": self.threshold,
            "alpha": self.alpha,
            "exit_code": self.exit_code,
            "regressions": [asdict(c) for c in self.regressions],
            "improvements": [asdict(c) for c in self.improvements],
            "unchanged": [asdict(c) for c in self.cases if c.verdict == "unchanged"],
            "only_in_base": self.only_in_base,
            "only_in_new": self.only_in_new,
            "not_comparable": self.not_comparable,
            "drift": self.drift,
            "normalize": self.normalize,
            "scatter": self.scatter,
        }
