"""The one results table natbench writes and reads: one JSON line per measured case.

Every stage appends rows with these columns (missing ones are null) to its own file DIR/rows/<writer>.jsonl
and reads every writer's rows back with `load` (older sets with one DIR/results.jsonl read the same).
"""

from __future__ import annotations

import json
import os
import platform
import re
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STATUSES = ("ok", "oom", "unsupported", "error", "skipped", "timeout")

COLUMNS: dict[str, str] = {
    "case_id": "deterministic id of the case's parameters",
    "status": "one of " + ", ".join(STATUSES),
    "error": "why a case is not ok (error message or skip reason)",
    "kind": "op | model | custom (a package.module:function case) | accuracy | pair (a paired ratio) | group "
    "(cases along one axis timed interleaved)",
    "target": "na | window | full | a create_model name",
    "backend": "NA backend asked for (auto, fused, tiled, flex, natten, reference) or the op's implementation",
    "kernel": "what actually ran (natbench.attention.last_kernel(), e.g. natten:flex-fna)",
    "device": "cpu | cuda",
    "device_name": "CPU model or GPU name",
    "dtype": "float32 | float16 | bfloat16",
    "mode": "inference | training",
    "batch": "batch size",
    "resolution": "square input side: feature-map side for ops, image side for models",
    "kernel_size": "NA kernel / Swin window size",
    "dilation": "NA dilation",
    "heads": "attention heads (ops)",
    "head_dim": "channels per head (ops)",
    "tokens": "tokens per image (resolution ** 2 for ops)",
    "latency_ms": "median time of one call",
    "latency_iqr_ms": "interquartile range of the timing samples (on CPU a sample is the mean of calls_per_sample calls)",
    "latency_min_ms": "fastest sample (same caveat)",
    "latency_samples_ms": "every timing sample (list)",
    "peak_mem_bytes": "peak memory of the case above the process's baseline: allocator bytes (CUDA and CPU); "
    "None when not measured (memory_method says why)",
    "flops": "analytic FLOPs of one call",
    "macs": "analytic multiply-accumulates of one call",
    "params": "parameters (models)",
    "throughput": "images per second (models)",
    "top1": "ImageNet top-1 %, accuracy rows",
    "top5": "ImageNet top-5 %, accuracy rows",
    "count": "images evaluated, accuracy rows",
    "checkpoint": "weights evaluated, accuracy rows",
    "agreement": "% of images with the same top-1 prediction as the first backend (accuracy --compare-backends)",
    "kl_div": "mean KL(first backend || this one) of the softmax outputs, nats (accuracy --compare-backends)",
    "preset": "sweep preset the row came from",
    "timestamp": "UTC ISO time the case finished",
    "env": "provenance dict (natbench.env.collect())",
    "shifted": "window op: Swin shifted windows (shift = window // 2)",
    "rpb": "na / window op: with a relative positional bias",
    "drop_rpb": "NAT/DiNAT model run without its RPB (natten's fused kernels have none)",
    "calls_per_sample": "calls averaged in each timing sample (1 with CUDA events)",
    "timer": "how latency was timed (timeit blocks, torch.utils.benchmark adaptive_autorange, cuda-events, +l2-flush)",
    "memory_method": "how peak_mem_bytes was read (CUDA: max_memory_allocated; CPU: torch's allocation events; "
    "'not measured: ...' under a torch profiler the caller runs; see natbench.measure.memory)",
    "threads": "torch intra-op threads the case ran with",
    "duration_s": "wall seconds of the whole case (process start to result; all its processes)",
    "repeats": "fresh processes the case was measured in (each a full warm-up + timing + memory pass)",
    "latency_process_ms": "median latency of each process (list); latency_ms is their median",
    "latency_ci_low_ms": "95 % interval of the case's median latency, bootstrap over processes (plus the "
    "machine's drift floor when latency_drift_cv > 0): low",
    "latency_ci_high_ms": "95 % interval of the case's median latency: high (as latency_ci_low_ms)",
    "latency_ci_method": "how the latency interval was made: bootstrap over processes, + the machine drift floor "
    "of `natbench noise` for a case whose processes spanned less time than the floor's rounds",
    "latency_drift_cv": "drift floor (log-scale SD) added in quadrature to the interval; 0: none added",
    "latency_process_ci_low_ms": "the bootstrap interval over processes before the drift floor: low",
    "latency_process_ci_high_ms": "the bootstrap interval over processes before the drift floor: high",
    "latency_span_s": "seconds from the start of the row's first process to the end of its last",
    "peak_mem_process_bytes": "peak memory of each process (list); peak_mem_bytes is their median",
    "peak_mem_ci_low_bytes": "95 % interval of the median peak memory, bootstrap over processes: low",
    "peak_mem_ci_high_bytes": "95 % interval of the median peak memory, bootstrap over processes: high",
    "calib_ms": "median ms of the calibration workload (a 256x256 matmul, timed as the runtime is primed and "
    "again after the timed calls; the slower reading) over the case's processes: the machine's speed then",
    "calib_process_ms": "the calibration workload's ms in each process (list)",
    "calib_bw_ms": "median ms of the memory calibration (a 24 MiB copy from DRAM, read after the prime; CPU only) "
    "across processes",
    "calib_bw_process_ms": "the memory calibration's ms in each process (list)",
    "sentinel": "what the sentinel ran (a 256x256 matmul and torch's version; CPU blocked timer): readings and "
    "latency_rel compare only between rows with the same sentinel",
    "sentinel_ms": "median ms of a sentinel call, read in a block after each timed block (the machine's speed "
    "at the moments the case ran); across the case's processes",
    "sentinel_process_ms": "the sentinel's median ms in each process (list)",
    "latency_rel": "latency in sentinel calls: per process the median over blocks of (block / the sentinel "
    "block after it), then the median over processes. The machine's speed cancels: compare judges this",
    "latency_rel_process": "latency_rel of each process (list)",
    "timed_faults": "minor page faults per timed call, median over processes (CPU; after warm-up a case's heap "
    "reuses its pages, so this is ~0 unless it had not settled)",
    "timed_faults_process": "timed_faults of each process (list)",
    "heap_reserve_bytes": "heap pre-faulted by warm-up after a first call that faulted (CPU case processes; "
    "natbench.measure.memory.reserve_heap), median over processes",
    "processes_run": "fresh processes the case ran: repeats, plus re-runs of processes slowed by the machine",
    "contended_processes": "processes whose matmul calibration or sentinel read over 10 % slower than the "
    "machine's quiet speed (the reading a tenth of this device's case processes in the sweep beat when the row "
    "was written, the fastest among ten or fewer: natbench.measure.repeat.quiet), slowed by other work on the "
    "machine, or whose timed calls still faulted pages in (over 256 a call and 1 % of its time at 2 us each), "
    "or, for pair and group rows, whose members ran over 10 % slower together than the row's quiet level (its "
    "fastest process among ten or fewer): re-run up to the case's share; "
    "the row is made of the `repeats` least contended processes",
    "rerun_failures": "re-runs that failed (left out: the case's first `repeats` processes had succeeded)",
    "latency_dropped_process_ms": "per-process medians of the processes left out of the row (the most contended)",
    "ratio_dropped_process": "pair rows: the ratios of the processes left out of the row (the most contended; list)",
    "load_before": "1-min load average just before the case's first process",
    "load_after": "1-min load average just after the case's last process",
    "busy": "the load average before or after one of the case's processes was above the CPUs it may use: "
    "timings are contended",
    "affinity": "CPUs the case's processes may run on (os.sched_getaffinity)",
    "allocator": "memory allocator and its environment settings the case ran under",
    "pair_of": "pair rows: [numerator case_id, denominator case_id]",
    "ab_side": "natbench ab rows: base or new",
    "ab_path": "natbench ab rows: the directories first on this side's import path",
    "ab_interleaved_with": "natbench ab rows: the other side's import path (its processes alternated with these)",
    "group_of": "group rows: the members' case_ids, in axis order",
    "group_axis": "group rows: the case field the members differ in (e.g. kernel_size)",
    "group_values": "group rows: the members' values of the axis (list)",
    "member_process_ms": "group rows: per member, its median latency in each process (lists aligned by process)",
    "member_ms": "group rows: per member, the median over processes of member_process_ms (list)",
    "metric": "pair and group rows: what is compared (latency)",
    "ratio": "pair rows: numerator / denominator latency (geometric mean over processes)",
    "ratio_ci_low": "pair rows: 95 % interval of the ratio over processes (Student t of the log ratios): low",
    "ratio_ci_high": "pair rows: 95 % interval of the ratio over processes (Student t of the log ratios): high",
    "ratio_process": "pair rows: each process's ratio (median of its interleaved rounds; list)",
    "numerator_process_ms": "pair rows: the numerator's median latency in each paired process (list)",
    "denominator_process_ms": "pair rows: the denominator's median latency in each paired process (list)",
    "machine": "readable hardware key a series is drawn per (cpu:<model>:<threads>t, cuda:<GPU name>)",
    "fingerprint": "hash of machine, torch / natten / natbench versions and git sha, timer settings: "
    "a case's identity is (case_id, fingerprint)",
    "gpu_index": "physical GPU the case ran on (CUDA_VISIBLE_DEVICES of its worker), CUDA cases",
    "host": "hostname of the writer",
    "crop_pct": "accuracy rows: center-crop fraction of the eval transform",
    "interpolation": "accuracy rows: resize interpolation of the eval transform",
    "checkpoint_sha256": "accuracy rows: sha256 of the checkpoint file evaluated",
    "dataset": "accuracy rows: ImageNet validation folder (when it came from NATBENCH_IMAGENET)",
}

# The columns a case's parameters fill (what case_id is derived from, besides kind).
CASE_PARAMS = (
    "target",
    "backend",
    "device",
    "dtype",
    "mode",
    "batch",
    "resolution",
    "kernel_size",
    "dilation",
    "heads",
    "head_dim",
    "shifted",
    "rpb",
    "drop_rpb",
)

RESULTS_FILE = "results.jsonl"  # the single file of older result sets (still read)
ENV_FILE = "env.json"  # their environment record (still read)
ROWS_DIR = "rows"  # DIR/rows/<writer>.jsonl: one file per writer (shard, process, host)
ENVS_DIR = "envs"  # DIR/envs/<writer>.json: that writer's environment record
PROCESSES_DIR = "processes"  # DIR/processes/<writer>.jsonl: a sweep's journal of finished processes


def writer_id(shard: tuple[int, int] | None = None) -> str:
    """This process's writer name: <host>-<pid>[-s<I>of<N>], unique among concurrent writers."""
    name = f"{platform.node() or 'host'}-{os.getpid()}"
    if shard is not None:
        name += f"-s{shard[0]}of{shard[1]}"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def append_row(directory: str | os.PathLike, row: dict[str, Any], writer: str | None = None) -> None:
    """Append one row to DIR/rows/<writer>.jsonl (flushed and fsynced, so a kill loses no finished case).

    One writer per file: concurrent shards never interleave within a file, on NFS too.
    """
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}; add them to natbench.results.COLUMNS")
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    _append_line(Path(directory) / ROWS_DIR / f"{writer or writer_id()}.jsonl", row)


def _append_line(path: Path, record: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(record, default=str, sort_keys=True) + "\n"
    with open(path, "a+b") as fh:
        if fh.tell() > 0:  # after a kill mid-write, end the half line so this record stays parseable
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def append_process(
    directory: str | os.PathLike, case_id: str, fingerprint: str, result: dict[str, Any] | None, writer: str
) -> None:
    """Journal one finished process of a case (DIR/processes/<writer>.jsonl), or with result None mark the
    case's row as written: a resumed sweep reuses the processes journaled since the case's last mark."""
    record = {"case_id": case_id, "fingerprint": fingerprint, "time": time.time()}
    record.update({"done": True} if result is None else {"result": result})
    _append_line(Path(directory) / PROCESSES_DIR / f"{writer}.jsonl", record)


def read_processes(directory: str | os.PathLike) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Journaled processes per (case_id, fingerprint) whose row is not written yet, of every writer (a
    resumed sweep is a new writer), in the order they finished."""
    records = []
    for path in sorted((Path(directory) / PROCESSES_DIR).glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(line)
                records.append((float(record["time"]), (record["case_id"], record["fingerprint"]), record))
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: that process runs again
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for _, key, record in sorted(records, key=lambda r: r[0]):
        if record.get("done"):
            out.pop(key, None)
        elif isinstance(record.get("result"), dict):
            out.setdefault(key, []).append(record["result"])
    return out


def clear_processes(directory: str | os.PathLike) -> bool:
    """Delete the journal once no writer has a case pending in it (all rows written); True if deleted."""
    if read_processes(directory):
        return False
    for path in (Path(directory) / PROCESSES_DIR).glob("*.jsonl"):
        path.unlink(missing_ok=True)
    return True


def write_env(directory: str | os.PathLike, env: dict[str, Any], writer: str | None = None) -> Path:
    """DIR/envs/<writer>.json: this writer's environment (atomic; no other writer uses the name)."""
    writer = writer or writer_id()
    path = Path(directory) / ENVS_DIR / f"{writer}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{writer}.json.tmp")
    tmp.write_text(json.dumps(env, indent=2, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_envs(directory: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every environment record of a results directory, by writer (an older DIR/env.json as "env.json")."""
    directory = Path(directory)
    paths = ([directory / ENV_FILE] if (directory / ENV_FILE).is_file() else []) + sorted(
        (directory / ENVS_DIR).glob("*.json")
    )
    return {
        (p.name if p.name == ENV_FILE else p.stem): json.loads(p.read_text(encoding="utf-8")) for p in paths
    }


def row_files(directory: str | os.PathLike) -> list[Path]:
    """The JSONL files of a results directory: the older single results.jsonl, then one per writer."""
    directory = Path(directory)
    legacy = [directory / RESULTS_FILE] if (directory / RESULTS_FILE).is_file() else []
    return legacy + sorted((directory / ROWS_DIR).glob("*.jsonl"))


def has_rows(directory: str | os.PathLike) -> bool:
    return bool(row_files(directory))


def read_rows(directory: str | os.PathLike, malformed: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of every writer's file of one results directory, oldest first (by timestamp, stable).

    A malformed (torn) line is skipped with a warning and its "file:line" appended to `malformed`,
    so callers can count and report it.
    """
    rows = []
    bad = []
    for path in row_files(directory):
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                bad.append(f"{path}:{n}")
                continue
            rows.append(row)
    if bad:
        warnings.warn(
            f"{directory}: skipping {len(bad)} malformed (half-written?) line(s): {', '.join(bad[:5])}",
            stacklevel=2,
        )
        if malformed is not None:
            malformed.extend(bad)
    rows.sort(key=lambda r: str(r.get("timestamp") or ""))
    return rows


IDENTITY = ["case_id", "fingerprint"]  # a case measured in one environment


def load(directories: str | os.PathLike | Iterable[str | os.PathLike], latest: bool = True):
    """pandas.DataFrame of the rows of one or many results directories, with a `source` column.

    latest: keep only the newest row of each (case_id, fingerprint) within a directory; rows of one case
    from two environments (machines, versions, thread counts) are both kept.
    frame.attrs["malformed"] lists the "file:line" of every line that could not be read.
    """
    import pandas as pd

    if isinstance(directories, (str, os.PathLike)):
        directories = [directories]
    frames = []
    malformed: list[str] = []
    for d in directories:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"results directory {d} does not exist")
        rows = read_rows(d, malformed)
        frame = pd.DataFrame(rows, columns=list(COLUMNS) if not rows else None)
        for col in COLUMNS:
            if col not in frame:
                frame[col] = None
        if latest and len(frame):
            frame = frame.drop_duplicates(IDENTITY, keep="last")
        frame["source"] = str(d)
        frames.append(frame)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*COLUMNS, "source"])
    out.attrs["malformed"] = malformed
    return out


def summary(frame) -> str:
    """Status counts and one line per case (latency, spread, peak memory, or why it did not run)."""
    if frame is None or not len(frame):
        return "no cases"
    counts = frame["status"].value_counts()
    lines = ["status: " + ", ".join(f"{k} {v}" for k, v in counts.items())]
    malformed = frame.attrs.get("malformed") or []
    if malformed:
        lines.append(f"malformed lines skipped: {len(malformed)} ({', '.join(malformed[:5])})")
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
    elif row.status == "ok" and row.kind == "pair":
        note = f"ratio {_num(row.ratio, '.3f')} ({_num(row.ratio_ci_low, '.3f')}..{_num(row.ratio_ci_high, '.3f')})"
    elif row.status == "ok" and row.kind == "group" and isinstance(row.member_ms, list):
        values = ", ".join(f"{v}: {_num(ms, '.3f')}" for v, ms in zip(row.group_values, row.member_ms))
        note = f"ms by {row.group_axis}: {values}"
    return (
        f"{row.case_id:<{width}}  {row.status:<11} {_num(row.latency_ms, '10.3f')} "
        f"{_num(row.latency_iqr_ms, '9.3f')} {_num(mem, '9.1f')}  {note}"
    )


def _flat(frame):
    """Nested columns (env dict, sample lists) as JSON text, for flat formats."""
    frame = frame.copy()
    for col in ("env", "latency_samples_ms"):
        if col in frame:
            frame[col] = [
                None if v is None or (isinstance(v, float) and v != v) else json.dumps(v, default=str)
                for v in frame[col]
            ]
    return frame


def _frame(data):
    import pandas as pd

    return data if isinstance(data, pd.DataFrame) else load(data)


def to_csv(data, path: str | os.PathLike) -> Path:
    """Write a results frame (or the results of a directory / directories) as CSV; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _flat(_frame(data)).to_csv(path, index=False)
    return path


def to_parquet(data, path: str | os.PathLike) -> Path:
    """Write a results frame (or the results of a directory / directories) as Parquet; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _flat(_frame(data)).to_parquet(path, index=False)
    return path


EXPORTERS = {"csv": to_csv, "parquet": to_parquet}


def export(data, fmt: str, path: str | os.PathLike) -> Path:
    if fmt not in EXPORTERS:
        raise ValueError(f"export format must be one of {', '.join(EXPORTERS)}, got {fmt!r}")
    return EXPORTERS[fmt](data, path)


def add_arguments(parser) -> None:
    parser.add_argument(
        "dirs", nargs="+", metavar="DIR", help="results directories (rows/*.jsonl or results.jsonl)"
    )
    parser.add_argument("--csv", metavar="PATH", help="write the rows as CSV")
    parser.add_argument("--parquet", metavar="PATH", help="write the rows as Parquet")
    parser.add_argument("--all", action="store_true", help="keep every row, not only the newest per case")


def main(args) -> int:
    frame = load(args.dirs, latest=not args.all)
    print(summary(frame))
    for fmt in ("csv", "parquet"):
        if getattr(args, fmt):
            print(f"wrote {export(frame, fmt, getattr(args, fmt))}")
    return 0
