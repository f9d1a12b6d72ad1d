"""Run a preset's cases, each in its own process, appending one row per finished case; resumable."""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from natbench import results
from natbench.measure.spec import CaseSpec
from natbench.sweep import preset as presets

DEFAULT_TIMEOUT = 600.0
LOG_DIR = "logs"


def _write_env(out: Path, env: dict[str, Any]) -> None:
    path = out / results.ENV_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


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
):
    """Run every case of `preset` not yet in OUT/results.jsonl; return the rows of all its cases (DataFrame).

    grid: overrides, {"resolution": [14, 28]} or ["resolution=14,28"]. shard: (I, N) or "I/N", 0-based.
    retry: statuses whose cases run again (e.g. ("timeout", "error")); the newest row of a case wins.
    timeout / memory_limit_gb / threads: per case, default the preset's settings (timeout: 600 s).
    Cases run in multiprocessing (forkserver) processes: in a script, call this under
    `if __name__ == "__main__":`, as for any multiprocessing code.
    """
    import torch

    from natbench.env import collect
    from natbench.measure.repeat import run_repeated

    unknown = set(retry) - set(results.STATUSES)
    if unknown:
        raise ValueError(f"retry statuses must be among {', '.join(results.STATUSES)}, got {sorted(unknown)}")
    p, specs = plan(preset, grid, shard)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / LOG_DIR).mkdir(exist_ok=True)
    env = collect()
    _write_env(out, env)
    latest = {r.get("case_id"): r.get("status") for r in results.read_rows(out)}
    todo = [s for s in specs if s.case_id not in latest or latest[s.case_id] in retry]
    limit = timeout if timeout is not None else (p.timeout or DEFAULT_TIMEOUT)
    memory = int(memory_limit_gb * 2**30) if memory_limit_gb else p.memory_limit
    threads = threads or p.threads
    cuda = torch.cuda.is_available()
    counts: Counter[str] = Counter()
    bar = _progress(len(specs), len(specs) - len(todo), p.name, progress)
    try:
        for spec in todo:
            if bar is not None:
                bar.set_description(f"{p.name} {spec.case_id[:40]}")
            if spec.device == "cuda" and not cuda:  # no process needed to say so
                from natbench.measure.case import NEEDS_CUDA, spec_row

                row = {**spec_row(spec), "status": "unsupported", "error": NEEDS_CUDA}
            else:
                log = out / LOG_DIR / f"{spec.case_id}.log"
                row = run_repeated(spec.to_dict(), limit, p.timing, memory, log, threads, p.repeats)
                if log.is_file() and not log.stat().st_size:
                    log.unlink()  # keep only logs that say something
            row.setdefault("timestamp", datetime.now(UTC).isoformat(timespec="seconds"))
            row.update(preset=p.name, env=env)
            results.append_row(out, row)
            counts[row["status"]] += 1
            if bar is not None:
                bar.set_postfix(dict(counts), refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    ids = {s.case_id for s in specs}
    frame = results.load(out)
    return frame[frame["case_id"].isin(ids)].reset_index(drop=True)


def _progress(total: int, done: int, name: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=name, unit="case", dynamic_ncols=True)


def summary(frame) -> str:
    """Status counts and one line per case (latency, spread, peak memory, or why it did not run)."""
    if frame is None or not len(frame):
        return "no cases"
    counts = frame["status"].value_counts()
    lines = ["status: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    width = max(len(str(c)) for c in frame["case_id"])
    lines.append(f"{'case':<{width}}  {'status':<11} {'median ms':>10} {'IQR ms':>9} {'peak MiB':>9}  note")
    for row in frame.itertuples(index=False):
        lines.append(_line(row, width))
    return "\n".join(lines)


def _num(value, fmt: str) -> str:
    try:
        if value is None or value != value:  # None or NaN
            return "-"
        return format(float(value), fmt)
    except (TypeError, ValueError):
        return "-"


def _line(row, width: int) -> str:
    mem = (
        None
        if row.peak_mem_bytes is None or row.peak_mem_bytes != row.peak_mem_bytes
        else row.peak_mem_bytes / 2**20
    )
    note = "" if row.status == "ok" else str(row.error or "")[:80]
    if row.status == "ok" and row.throughput == row.throughput and row.throughput is not None:
        note = f"{row.throughput:.1f} img/s"
    return (
        f"{row.case_id:<{width}}  {row.status:<11} {_num(row.latency_ms, '10.3f')} "
        f"{_num(row.latency_iqr_ms, '9.3f')} {_num(mem, '9.1f')}  {note}"
    )
