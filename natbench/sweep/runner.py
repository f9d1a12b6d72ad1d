"""Run a preset's cases, each in R fresh processes, appending one row per finished case to this writer's own
file; resumable: a case is done when a row with its case_id and this environment's fingerprint exists.

The processes run round-robin: pass 1 runs one process of every case, pass 2 the next (in reverse order), and
so on, so that each case's R processes are spread over the whole sweep and its interval holds the machine's
drift over those minutes, not only over the seconds one case takes. Then re-run passes run one more process
of each case with fewer than R uncontended processes (judged against the quiet calibration readings of the
sweep's case processes on that device: natbench.measure.repeat.quiet), up to the case's share of R; each row is
made of its case's R least contended processes. Finished processes are journaled (DIR/processes/), so an
interrupted sweep resumes without redoing them.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from natbench import results
from natbench.env import fingerprint
from natbench.measure.spec import CaseSpec
from natbench.sweep import preset as presets

DEFAULT_TIMEOUT = 600.0
LOG_DIR = "logs"


def plan(
    preset: str | os.PathLike | presets.Preset,
    grid: dict | list[str] | None = None,
    shard: tuple[int, int] | str | None = None,
) -> tuple[presets.Preset, list[CaseSpec]]:
    """The preset and the cases this shard runs, without running anything."""
    import torch

    p = preset if isinstance(preset, presets.Preset) else presets.load_preset(preset)
    specs = presets.expand(p, presets.parse_grid_overrides(grid))
    cuda = torch.cuda.is_available()  # device "auto" becomes this machine's device before ids are fixed
    specs = list({s.case_id: s for s in (spec.resolved(cuda) for spec in specs)}.values())
    presets.validate_targets(specs)
    parsed = presets.parse_shard(shard)
    if parsed is not None:
        specs = presets.shard(specs, *parsed)
    return p, specs


def _threads(p: presets.Preset, threads: int | None) -> int:
    import torch

    return threads or p.threads or torch.get_num_threads()


def fingerprints(p: presets.Preset, specs: list[CaseSpec], env: dict, threads: int | None) -> dict[str, str]:
    """Each case's environment fingerprint here: a case's identity is (case_id, fingerprint)."""
    n = _threads(p, threads)
    return {s.case_id: fingerprint(env, s.device, n, p.timing) for s in specs}


STATES = ("done", "failed", "stale", "pending")


def case_states(
    out: str | os.PathLike, specs: list[CaseSpec], prints: dict[str, str], malformed: list[str] | None = None
) -> list[tuple[str, str, str | None]]:
    """(case_id, state, newest status) per case: done (ok / unsupported / skipped here), failed (error, oom,
    timeout here), stale (rows only from another environment) or pending (no row)."""
    newest: dict[tuple, str] = {}
    seen: set[str] = set()
    for r in results.read_rows(out, malformed) if Path(out).is_dir() else []:
        newest[(r.get("case_id"), r.get("fingerprint"))] = r.get("status")
        seen.add(r.get("case_id"))
    states = []
    for s in specs:
        status = newest.get((s.case_id, prints[s.case_id]))
        if status is not None:
            state = "failed" if status in ("error", "oom", "timeout") else "done"
        else:
            state = "stale" if s.case_id in seen else "pending"
        states.append((s.case_id, state, status))
    return states


def status_report(states: list[tuple[str, str, str | None]]) -> str:
    counts = Counter(state for _, state, _ in states)
    width = max((len(c) for c, _, _ in states), default=4)
    lines = [f"{'case':<{width}}  state    status"]
    lines += [f"{c:<{width}}  {state:<8} {status or '-'}" for c, state, status in states]
    lines.append(f"total {len(states)}: " + ", ".join(f"{k} {counts.get(k, 0)}" for k in STATES))
    return "\n".join(lines)


def run_sweep(
    preset: str | os.PathLike | presets.Preset,
    out: str | os.PathLike,
    grid: dict | list[str] | None = None,
    shard: tuple[int, int] | str | None = None,
    progress: bool = True,
    timeout: float | None = None,
    retry: tuple[str, ...] = (),
    memory_limit_gb: float | None = None,
    threads: int | None = None,
    force: bool = False,
    rerun_share: float | None = None,
    rerun_seconds: float | None = None,
):
    """Run every case of `preset` not yet measured in this environment into OUT; return their rows (DataFrame).

    A case counts as measured when OUT holds a row with its case_id and this environment's fingerprint
    (machine, threads, versions, timer settings): rows from another environment stay and are kept beside
    the new ones. Rows go to OUT/rows/<host>-<pid>[-s<I>of<N>].jsonl, so shards may share OUT.
    grid: overrides, {"resolution": [14, 28]} or ["resolution=14,28"]. shard: (I, N) or "I/N", 0-based.
    retry: statuses whose cases run again (e.g. ("timeout", "error")); the newest row of a case wins.
    force: run every case again.
    rerun_share: processes slowed by the machine (natbench.measure.repeat) are re-run after the R passes,
    in up to this share of R extra passes (default: the preset's `reruns`, else 0.4; 0: none); no re-run starts
    later than `rerun_seconds` after the first (default: the preset's, else no limit): the cases left then keep
    the processes they have.
    timeout / memory_limit_gb / threads: per case, default the preset's settings (timeout: 600 s).
    Cases run in multiprocessing (forkserver) processes: in a script, call this under
    `if __name__ == "__main__":`, as for any multiprocessing code.
    """
    import torch

    from natbench.env import collect, gpu_index, machine_key
    from natbench.measure import drift as machine_drift
    from natbench.measure.repeat import (
        DEFAULT_RERUNS,
        finish,
        needs_rerun,
        quiet_reference,
        rerun_budget,
        run_process,
    )

    unknown = set(retry) - set(results.STATUSES)
    if unknown:
        raise ValueError(f"retry statuses must be among {', '.join(results.STATUSES)}, got {sorted(unknown)}")
    p, specs = plan(preset, grid, shard)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_DIR).mkdir(exist_ok=True)
    env = collect()
    writer = results.writer_id(presets.parse_shard(shard))
    results.write_env(out, env, writer)
    prints = fingerprints(p, specs, env, threads)
    states = case_states(out, specs, prints)
    todo_ids = {c for c, state, status in states if force or state in ("stale", "pending") or status in retry}
    todo = [s for s in specs if s.case_id in todo_ids]
    limit = timeout if timeout is not None else (p.timeout or DEFAULT_TIMEOUT)
    memory = int(memory_limit_gb * 2**30) if memory_limit_gb else p.memory_limit
    n_threads = _threads(p, threads)
    threads = threads or p.threads
    cuda = torch.cuda.is_available()
    # only CPU cases whose processes span less than the profile's rounds use it
    drift = machine_drift.load(n_threads, env) if any(s.device == "cpu" for s in todo) else None
    repeats = max(1, int(p.repeats))
    if rerun_share is None:
        rerun_share = p.reruns if p.reruns is not None else DEFAULT_RERUNS
    if not 0 <= rerun_share <= 1:
        raise ValueError(f"rerun_share must be a share of repeats from 0 to 1, got {rerun_share}")
    if rerun_seconds is None:
        rerun_seconds = p.rerun_seconds
    if rerun_seconds is not None and not rerun_seconds >= 0:
        raise ValueError(f"rerun_seconds must be >= 0, got {rerun_seconds}")
    journal = {} if force else results.read_processes(out)
    processes = {s.case_id: list(journal.get((s.case_id, prints[s.case_id]), [])) for s in todo}
    counts: Counter[str] = Counter()
    done_before = (len(specs) - len(todo)) * repeats + sum(min(len(v), repeats) for v in processes.values())
    bar = _progress(len(specs) * repeats, done_before, p.name, progress)

    def write(spec, row):
        row.setdefault("timestamp", datetime.now(UTC).isoformat(timespec="seconds"))
        row.update(
            preset=p.name,
            env=env,
            machine=machine_key(env, spec.device, n_threads),
            fingerprint=prints[spec.case_id],
            host=env.get("hostname"),
            gpu_index=gpu_index() if spec.device == "cuda" else None,
        )
        results.append_row(out, row, writer)
        results.append_process(out, spec.case_id, prints[spec.case_id], None, writer)
        counts[row["status"]] += 1
        if bar is not None:
            bar.set_postfix(dict(counts), refresh=False)

    kinds = {s.case_id: (s.kind, s.device) for s in todo}

    def reference(device: str) -> dict:
        """The quiet calibration readings of this device's case processes so far (pairs and groups are judged
        against them, as cases are, but do not set them: their sentinel blocks are shorter)."""
        return quiet_reference(
            [
                p
                for c, got in processes.items()
                if kinds[c][0] not in ("pair", "group") and kinds[c][1] == device
                for p in got
            ]
        )

    try:
        open_cases = []
        for spec in todo:
            if spec.device == "cuda" and not cuda:  # no process needed to say so
                from natbench.measure.case import NEEDS_CUDA, spec_row

                write(spec, {**spec_row(spec), "status": "unsupported", "error": NEEDS_CUDA})
                _advance(bar, repeats)
                continue
            open_cases.append(spec)  # journaled processes of an earlier run count (below)
        finished: set[str] = set()
        most = repeats + rerun_budget(repeats, rerun_share)

        def close(spec):
            got = processes[spec.case_id]
            profile = drift if spec.device == "cpu" else None
            write(spec, finish(spec.to_dict(), got, repeats, reference(spec.device), profile))
            finished.add(spec.case_id)

        def settled(spec) -> bool:
            # no re-run wanted, or none left: each case may run up to its share of R more processes
            got = processes[spec.case_id]
            if len(got) >= most or (got and got[-1].get("status") != "ok"):
                return True
            return not needs_rerun(got, repeats, reference(spec.device))

        reruns_from = None
        for n in range(most):
            rerun = n >= repeats
            if rerun and reruns_from is None:
                reruns_from = time.monotonic()
            for spec in open_cases if n % 2 == 0 else open_cases[::-1]:
                got = processes[spec.case_id]
                journaled_failure = got and got[-1].get("status") != "ok"
                if spec.case_id in finished or ((rerun or journaled_failure) and settled(spec)):
                    if spec.case_id not in finished:
                        close(spec)
                    continue
                if rerun and rerun_seconds is not None and time.monotonic() - reruns_from >= rerun_seconds:
                    close(spec)  # the re-run passes' time is spent
                    continue
                if len(got) <= n or rerun:  # else journaled by an earlier run
                    if bar is not None:
                        what = "re-run" if rerun else f"{n + 1}/{repeats}"
                        bar.set_description(f"{p.name} {what} {spec.case_id[:36]}")
                    log = out / LOG_DIR / f"{spec.case_id}.log"
                    one = run_process(spec.to_dict(), limit, p.timing, memory, log, threads)
                    if log.is_file() and not log.stat().st_size:
                        log.unlink()  # keep only logs that say something
                    got.append(one)
                    results.append_process(out, spec.case_id, prints[spec.case_id], one, writer)
                    if one.get("status") != "ok":
                        if not rerun:
                            _advance(bar, 1 + repeats - len(got))
                        close(spec)
                        continue
                    if not rerun:
                        _advance(bar, 1)
                if n >= repeats - 1 and settled(spec):
                    close(spec)
        for spec in open_cases:
            if spec.case_id not in finished:
                close(spec)
    finally:
        if bar is not None:
            bar.close()
    results.clear_processes(out)
    frame = results.load(out)
    mine = [(c, f) for c, f in zip(frame["case_id"], frame["fingerprint"], strict=True)]
    wanted = set(prints.items())
    return frame[[m in wanted for m in mine]].reset_index(drop=True)


def _advance(bar, n: int) -> None:
    if bar is not None and n:
        bar.update(n)


def _progress(total: int, done: int, name: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=name, unit="case", dynamic_ncols=True)


# the summary lives with the results table; kept importable from here
summary = results.summary
