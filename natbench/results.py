"""The one results table natbench writes and reads: one JSON line per measured case.

Every stage appends rows with these columns (missing ones are null) to DIR/results.jsonl and
reads them back with `load`.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STATUSES = ("ok", "oom", "unsupported", "error", "skipped", "timeout")

COLUMNS: dict[str, str] = {
    "case_id": "deterministic id of the case's parameters",
    "status": "one of " + ", ".join(STATUSES),
    "error": "why a case is not ok (error message or skip reason)",
    "kind": "op | model | custom (a package.module:function case) | accuracy",
    "target": "na | window | full | a create_model name",
    "backend": "NA backend asked for (auto, tiled, flex, natten, reference) or the op's implementation",
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
    "peak_mem_bytes": "peak memory of the case above the process's baseline (CUDA allocator or CPU RSS)",
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
    "timer": "how latency was timed (torch.utils.benchmark blocked_autorange, cuda-events, +l2-flush)",
    "memory_method": "how peak_mem_bytes was read (torch.cuda.max_memory_allocated, or CPU RSS: see natbench.measure.memory)",
    "threads": "torch intra-op threads the case ran with",
    "duration_s": "wall seconds of the whole case (process start to result)",
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

RESULTS_FILE = "results.jsonl"
ENV_FILE = "env.json"


def append_row(directory: str | os.PathLike, row: dict[str, Any]) -> None:
    """Append one row to DIR/results.jsonl, flushed and fsynced so a kill loses no finished case."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}; add them to natbench.results.COLUMNS")
    if row.get("status") not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {row.get('status')!r}")
    path = Path(directory) / RESULTS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, default=str, sort_keys=True) + "\n"
    with open(path, "a+b") as fh:
        if fh.tell() > 0:  # after a kill mid-write, end the half line so this row stays parseable
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                line = "\n" + line
        fh.write(line.encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def read_rows(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """Rows of one results directory; a half-written last line is skipped with a warning."""
    path = Path(directory) / RESULTS_FILE
    if not path.exists():
        return []
    rows = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            warnings.warn(f"{path}:{n}: skipping a malformed (half-written?) line", stacklevel=2)
    return rows


def load(directories: str | os.PathLike | Iterable[str | os.PathLike], latest: bool = True):
    """pandas.DataFrame of the rows of one or many results directories, with a `source` column.

    latest: keep only the last row of each case_id within a directory.
    """
    import pandas as pd

    if isinstance(directories, (str, os.PathLike)):
        directories = [directories]
    frames = []
    for d in directories:
        if not Path(d).is_dir():
            raise FileNotFoundError(f"results directory {d} does not exist")
        rows = read_rows(d)
        frame = pd.DataFrame(rows, columns=list(COLUMNS) if not rows else None)
        for col in COLUMNS:
            if col not in frame:
                frame[col] = None
        if latest and len(frame):
            frame = frame.drop_duplicates("case_id", keep="last")
        frame["source"] = str(d)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=[*COLUMNS, "source"])
    return pd.concat(frames, ignore_index=True)


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
        "dirs", nargs="+", metavar="DIR", help="results directories (each with results.jsonl)"
    )
    parser.add_argument("--csv", metavar="PATH", help="write the rows as CSV")
    parser.add_argument("--parquet", metavar="PATH", help="write the rows as Parquet")
    parser.add_argument("--all", action="store_true", help="keep every row, not only the newest per case")


def main(args) -> int:
    from natbench.sweep.runner import summary

    frame = load(args.dirs, latest=not args.all)
    print(summary(frame))
    for fmt in ("csv", "parquet"):
        if getattr(args, fmt):
            print(f"wrote {export(frame, fmt, getattr(args, fmt))}")
    return 0
