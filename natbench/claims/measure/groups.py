"""Group keys and labels: results from different machines never mix (`machine` when present)."""

from __future__ import annotations

from typing import Any

from natbench.claims.measure.rows import is_missing

LABEL_ALWAYS = ("machine", "device", "backend", "kernel", "dtype")


def with_machine(columns: list[str], df) -> list[str]:
    """`columns` plus `machine` when the results carry it (issue-14's hardware key)."""
    if (
        df is not None
        and "machine" in df.columns
        and df["machine"].notna().any()
        and "machine" not in columns
    ):
        return ["machine", *columns]
    return list(columns)


def filled(frame, columns: list[str]):
    frame = frame.copy()
    for col in columns:
        if col not in frame.columns:
            frame[col] = "-"
        frame[col] = frame[col].map(lambda v: "-" if is_missing(v) else v)
    return frame


def label(values: dict[str, Any], varying: set[str]) -> str:
    parts = []
    for key, v in values.items():
        if is_missing(v) or v == "-":
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if key in LABEL_ALWAYS:
            parts.append(str(v))
        elif key in varying:
            parts.append(f"{key}={v}")
    return "/".join(parts) or "all"
