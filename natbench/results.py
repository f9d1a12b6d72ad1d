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
    "kind": "op | model | accuracy",
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
    "latency_iqr_ms": "interquartile range of the timing samples",
    "latency_min_ms": "fastest sample",
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
    "preset": "sweep preset the row came from",
    "timestamp": "UTC ISO time the case finished",
    "env": "provenance dict (natbench.env.collect())",
}

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
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line)
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
