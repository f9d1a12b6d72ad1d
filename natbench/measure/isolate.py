"""Run one case in a fresh process with a timeout: a crash, hang or OOM of the case becomes its row.

Processes come from a multiprocessing forkserver that has torch and natbench imported once, so a case starts
in a fraction of a second yet shares no state (allocator, compiled kernels, RSS peak) with other cases.
The forkserver starts without glibc's tcache (natbench.measure.memory.NO_TCACHE), and so do its cases.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# numpy.ma (np.median imports it lazily) and natbench.env (the row's device name) were imported by every case
# process; preloaded, a small op's measure_case took 0.24-0.26 s against 0.25-0.40 (8 processes each)
_PRELOAD = [
    "natbench.measure.case",
    "natbench.attention",
    "natbench.models",
    "torch.utils.benchmark",
    "numpy.ma",
    "natbench.env",
]
_LOG_TAIL = 1500


def _context():
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(_PRELOAD)
        return ctx
    return mp.get_context("spawn")


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        try:  # PR_SET_PDEATHSIG: a killed sweep leaves no orphaned case behind
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
        except (OSError, AttributeError):
            pass


def _measure_task(spec: dict, timing: dict, memory: bool = True, count_macs: bool = True) -> dict:
    from natbench.measure.case import measure_case

    return measure_case(spec, timing, with_env=False, memory=memory, count_macs=count_macs)


def _child(
    conn,
    task,
    kwargs: dict,
    device: str | None,
    memory_limit: int | None,
    log_path: str | None,
    sys_path: list[str],
    threads: int | None,
) -> None:
    sys.path[:] = sys_path  # the caller's path now, not the one the forkserver started with
    os.setpgrp()  # one process group per case: a timeout kills compile workers too
    _die_with_parent()
    if log_path:
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    from natbench.measure.memory import fix_malloc_thresholds, limit_address_space

    fix_malloc_thresholds()  # the same allocator state in every case process (see memory.py)
    import gc

    gc.freeze()  # the preloaded modules' objects: the full collection before timing then takes µs, not 0.2 s
    if memory_limit and device != "cuda":  # CUDA reserves vast address space: CPU cases only
        limit_address_space(memory_limit)
    if threads:
        import torch

        torch.set_num_threads(threads)
    conn.send(task(**kwargs))
    conn.close()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"the case's process died from {name}"
    return f"the case's process exited with code {code} without a result"


def _log_tail(log_path: str | None) -> str:
    if not log_path or not Path(log_path).is_file():
        return ""
    text = Path(log_path).read_text(errors="replace").strip()
    return ("; last output: " + text[-_LOG_TAIL:]) if text else ""


def _kill_group(proc) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()


def run_in_process(
    task,
    kwargs: dict[str, Any],
    timeout: float | None = None,
    device: str | None = None,
    memory_limit: int | None = None,
    log_path: str | os.PathLike | None = None,
    threads: int | None = None,
    path: list[str] | None = None,
) -> tuple[Any, str | None, str | None]:
    """task(**kwargs) in a fresh forkserver process: (result, None, None), or (None, status, error) when
    it gave nothing: status "timeout" after `timeout` seconds, "error" if the process died.
    task must be a module-level function (it is pickled by name). path: directories put first on the
    process's import path (modules the forkserver preloaded stay as they are: see natbench.measure.ab)."""
    log = os.fspath(log_path) if log_path else None
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(
        target=_child,
        args=(send, task, kwargs, device, memory_limit, log, [*(path or []), *sys.path], threads),
    )
    from natbench.measure.memory import no_tcache_env

    with no_tcache_env():  # read by the forkserver when it starts (once), or by a spawned child
        proc.start()
    send.close()
    result = None
    timed_out = False
    try:
        if recv.poll(timeout):
            try:
                result = recv.recv()
            except EOFError:
                result = None
        else:
            timed_out = True
    except BaseException:  # interrupted: take the case's processes down with us
        _kill_group(proc)
        raise
    finally:
        recv.close()
        if timed_out:
            _kill_group(proc)
        proc.join(10)
        if proc.is_alive():
            _kill_group(proc)
            proc.join()
    if result is not None:
        return result, None, None
    if timed_out:
        return None, "timeout", f"no result after {timeout:g} s (limit)" + _log_tail(log)
    return None, "error", _describe_exit(proc.exitcode) + _log_tail(log)


def run_isolated(
    spec: dict[str, Any],
    timeout: float | None = None,
    timing: dict | None = None,
    memory_limit: int | None = None,
    log_path: str | os.PathLike | None = None,
    threads: int | None = None,
    memory: bool = True,
    count_macs: bool = True,
    path: list[str] | None = None,
) -> dict[str, Any]:
    """The results row of `spec` measured in its own process (no `env`; the caller adds it).

    A case that gives no row still gets one: status "timeout" after `timeout` seconds, "error" if its
    process died (signal or exit code; the message ends with its last output when log_path is given).
    memory_limit: bytes a CPU case may allocate beyond its start; past it allocations fail (status oom).
    threads: torch intra-op threads for the case (default: torch's); 1 steadies timings on a shared machine.
    memory: also run the peak-memory pass (one call after the timed ones).
    count_macs: count a model's MACs in that process (False: the caller adds them once per case).
    path: directories put first on the process's import path (run_in_process).
    For repeats across processes see natbench.measure.repeat.run_repeated.
    """
    import torch

    from natbench.measure.case import spec_row
    from natbench.measure.spec import CaseSpec

    case = CaseSpec.from_dict(spec).resolved(torch.cuda.is_available())
    start = time.monotonic()
    kwargs = {
        "spec": case.to_dict(),
        "timing": dict(timing or {}),
        "memory": memory,
        "count_macs": count_macs,
    }
    row, status, error = run_in_process(
        _measure_task, kwargs, timeout, case.device, memory_limit, log_path, threads, path
    )
    if row is None:
        row = spec_row(case)
        row.update(status=status, error=error)
        row["timestamp"] = datetime.now(UTC).isoformat(timespec="seconds")
    row["duration_s"] = round(time.monotonic() - start, 3)
    return row
