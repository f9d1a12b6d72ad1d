"""Measurement core: a spec (what to run) -> a timer (how) -> a row (what was seen).

`measure_case(spec) -> row` measures in this process; `run_isolated(spec, timeout)` in a fresh one
(peak memory, crash and timeout safety); `run_repeated(spec, repeats=5)` in R fresh ones, with 95 %
intervals across them (natbench.measure.repeat, natbench.measure.stats). Importing this package does not
import torch.
"""

from natbench.measure.flops import model_macs, op_macs
from natbench.measure.spec import CaseSpec


def measure_case(spec, timing=None, with_env=True):
    """See natbench.measure.case.measure_case."""
    from natbench.measure.case import measure_case as _measure_case

    return _measure_case(spec, timing, with_env)


def run_isolated(spec, timeout=None, timing=None, memory_limit=None, log_path=None, threads=None):
    """See natbench.measure.isolate.run_isolated."""
    from natbench.measure.isolate import run_isolated as _run_isolated

    return _run_isolated(spec, timeout, timing, memory_limit, log_path, threads)


def run_repeated(
    spec, timeout=None, timing=None, memory_limit=None, log_path=None, threads=None, repeats=5, **kw
):
    """See natbench.measure.repeat.run_repeated (reruns=, span=, drift= pass through)."""
    from natbench.measure.repeat import run_repeated as _run_repeated

    return _run_repeated(spec, timeout, timing, memory_limit, log_path, threads, repeats, **kw)


__all__ = ["CaseSpec", "measure_case", "model_macs", "op_macs", "run_isolated", "run_repeated"]
