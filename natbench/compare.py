"""`natbench compare BASE NEW`: per-case latency ratios of two result sets, regressions flagged.

A case regresses when NEW/BASE exceeds 1 + threshold AND the slowdown is larger than the timing noise:
the ratio band built from both medians +- half their interquartile ranges lies entirely above 1.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from natbench.results import CASE_PARAMS, RESULTS_FILE, has_rows

DESCRIBE = ("kind", *CASE_PARAMS)


@dataclass
class CaseDelta:
    case_id: str
    describe: str
    base_ms: float
    new_ms: float
    ratio: float  # NEW / BASE latency: > 1 is slower
    ratio_low: float
    ratio_high: float
    verdict: str  # regression | improvement | unchanged


@dataclass
class Comparison:
    base: str
    new: str
    threshold: float
    cases: list[CaseDelta]
    only_in_base: list[str]
    only_in_new: list[str]
    not_comparable: list[dict[str, Any]]  # case in both but not ok (or without latency) in one

    @property
    def regressions(self) -> list[CaseDelta]:
        return [c for c in self.cases if c.verdict == "regression"]

    @property
    def improvements(self) -> list[CaseDelta]:
        return [c for c in self.cases if c.verdict == "improvement"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "new": self.new,
            "threshold": self.threshold,
            "regressions": [asdict(c) for c in self.regressions],
            "improvements": [asdict(c) for c in self.improvements],
            "unchanged": [asdict(c) for c in self.cases if c.verdict == "unchanged"],
            "only_in_base": self.only_in_base,
            "only_in_new": self.only_in_new,
            "not_comparable": self.not_comparable,
        }


def _number(value) -> float | None:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(x) else x


def _load(directory: str | Path):
    from natbench.results import load

    path = Path(directory)
    if not path.is_dir():
        raise FileNotFoundError(
            f"results directory {path} does not exist; pass a directory made by natbench sweep/run"
        )
    if not has_rows(path):
        raise FileNotFoundError(
            f"{path} has no {RESULTS_FILE} nor rows/*.jsonl; pass a directory made by natbench sweep/run"
        )
    frame = load(path)
    if frame.empty:
        raise ValueError(f"{path} has no rows")
    return {row["case_id"]: row for row in frame.to_dict("records")}


def _describe(row: dict[str, Any]) -> str:
    parts = []
    for col in DESCRIBE:
        value = row.get(col)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        parts.append(f"{col}={value}")
    return " ".join(parts)


def ratio_band(base_ms: float, base_iqr: float, new_ms: float, new_iqr: float) -> tuple[float, float]:
    """Lowest and highest NEW/BASE ratio with each median moved by half its IQR."""
    low_den = base_ms + base_iqr / 2
    high_den = base_ms - base_iqr / 2
    low = max(new_ms - new_iqr / 2, 0.0) / low_den
    high = (new_ms + new_iqr / 2) / high_den if high_den > 0 else math.inf
    return low, high


def classify(ratio: float, low: float, high: float, threshold: float) -> str:
    if ratio > 1 + threshold and low > 1:
        return "regression"
    if ratio < 1 / (1 + threshold) and high < 1:
        return "improvement"
    return "unchanged"


def compare(base: str | Path, new: str | Path, threshold: float = 0.1) -> Comparison:
    """Join two result directories on case_id and classify every case ok in both."""
    if not threshold >= 0:
        raise ValueError(f"threshold must be >= 0 (a fraction, 0.1 = 10 %), got {threshold}")
    base_rows, new_rows = _load(base), _load(new)
    cases, not_comparable = [], []
    for case_id in sorted(set(base_rows) & set(new_rows)):
        b, n = base_rows[case_id], new_rows[case_id]
        b_ms, n_ms = _number(b.get("latency_ms")), _number(n.get("latency_ms"))
        # a different CPU/GPU or thread count changes the time without any change in the code
        machine = [
            f"{k} {b.get(k)} vs {n.get(k)}" for k in ("device_name", "threads") if b.get(k) != n.get(k)
        ]
        if b.get("status") != "ok" or n.get("status") != "ok" or not b_ms or not n_ms or machine:
            if machine:
                reason = "measured on different machines: " + ", ".join(machine)
            else:
                reason = "no latency" if b.get("status") == n.get("status") == "ok" else "not ok in both"
            not_comparable.append(
                {
                    "case_id": case_id,
                    "base_status": b.get("status"),
                    "new_status": n.get("status"),
                    "reason": reason,
                    "describe": _describe(n),
                }
            )
            continue
        b_iqr = _number(b.get("latency_iqr_ms")) or 0.0
        n_iqr = _number(n.get("latency_iqr_ms")) or 0.0
        ratio = n_ms / b_ms
        low, high = ratio_band(b_ms, b_iqr, n_ms, n_iqr)
        cases.append(
            CaseDelta(
                case_id, _describe(n), b_ms, n_ms, ratio, low, high, classify(ratio, low, high, threshold)
            )
        )
    return Comparison(
        str(base),
        str(new),
        threshold,
        cases,
        sorted(set(base_rows) - set(new_rows)),
        sorted(set(new_rows) - set(base_rows)),
        not_comparable,
    )


def format_text(result: Comparison) -> str:
    lines = [
        f"base: {result.base}",
        f"new:  {result.new}",
        f"threshold: {result.threshold:.0%} (and outside the IQR noise band)",
        "",
    ]
    header = f"{'verdict':<12} {'ratio':>7} {'band':>17} {'base ms':>10} {'new ms':>10}  case"
    lines.append(header)
    for c in sorted(result.cases, key=lambda c: -c.ratio):
        band = f"[{c.ratio_low:.3f}, {c.ratio_high:.3f}]"
        lines.append(
            f"{c.verdict:<12} {c.ratio:>7.3f} {band:>17} {c.base_ms:>10.3f} {c.new_ms:>10.3f}  "
            f"{c.case_id} ({c.describe})"
        )
    if not result.cases:
        lines.append("(no case is ok in both result sets)")
    for title, ids in (("only in base", result.only_in_base), ("only in new", result.only_in_new)):
        if ids:
            lines += ["", f"{title} ({len(ids)}):"] + [f"  {i}" for i in ids]
    if result.not_comparable:
        lines += ["", f"not comparable ({len(result.not_comparable)}):"]
        lines += [
            f"  {d['case_id']}: base {d['base_status']}, new {d['new_status']} ({d['reason']})"
            for d in result.not_comparable
        ]
    lines += [
        "",
        f"{len(result.regressions)} regression(s), {len(result.improvements)} improvement(s), "
        f"{len(result.cases) - len(result.regressions) - len(result.improvements)} unchanged",
    ]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("base", help="baseline results directory")
    parser.add_argument("new", help="results directory to check against the baseline")
    parser.add_argument(
        "--threshold",
        type=float,
        default=0.1,
        help="relative slowdown that counts as a regression when it also exceeds the noise "
        "(default 0.1 = 10%%)",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def main(args: argparse.Namespace) -> int:
    try:
        result = compare(args.base, args.new, args.threshold)
    except (FileNotFoundError, ValueError) as exc:
        print(f"natbench compare: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(format_text(result))
    return 1 if result.regressions else 0
