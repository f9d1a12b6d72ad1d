"""`natbench claims`: judge the papers' claims from natbench results (optionally measuring the CPU ones first)."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
import tempfile
from pathlib import Path

RUN_PRESET = "cpu-quick"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        action="append",
        metavar="DIR",
        default=None,
        help="results directory to judge (repeatable: directories holding the same cases are sweeps, judged one "
        "by one and combined per claim); with --run the sweep writes to the first",
    )
    parser.add_argument(
        "--run",
        action="store_true",
        help=f"first run the '{RUN_PRESET}' sweep preset (CPU) into --results DIR or a new temp dir",
    )
    parser.add_argument("--json", action="store_true", help="print the verdicts as one JSON list")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 when a claim FAILs or ERRORs (FAILs of unverified or informative claims, SKIP and "
        "INCONCLUSIVE never do; ERROR always does: natbench itself is wrong)",
    )
    parser.add_argument(
        "--explain",
        metavar="ID",
        action="append",
        default=None,
        help="show how claim ID (or a glob) was judged: rows used, fit or ratio, band, tolerance, why",
    )
    parser.add_argument(
        "--filter",
        metavar="ID_GLOB",
        action="append",
        default=None,
        help="judge only claims whose id matches this glob, e.g. 'nat.table3.*' (repeatable)",
    )
    parser.add_argument(
        "--out", metavar="FILE", help="also write the JSON verdicts to FILE (e.g. DIR/claims.json)"
    )
    parser.add_argument(
        "--claims",
        metavar="PATH",
        action="append",
        default=None,
        help="claim TOML file or directory instead of the shipped natbench/claims/data",
    )


def _run_sweep(preset: str, out: Path):
    from natbench.sweep import run_sweep  # imported late: the sweep pulls in torch and the models

    return run_sweep(preset, out)


def _selected(claims, globs):
    if not globs:
        return claims
    return [c for c in claims if any(fnmatch.fnmatchcase(c.id, g) for g in globs)]


def _short(v, width: int = 14) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) or (isinstance(v, int) and abs(v) >= 10**6):
        text = f"{v:.4g}"
    elif isinstance(v, list) and v and all(isinstance(x, (int, float)) for x in v):
        text = "[" + ", ".join(f"{x:.3g}" for x in v) + "]"
    else:
        text = str(v)
    return text if len(text) <= width else text[: width - 1] + "…"


def skip_summary(verdicts) -> str:
    """SKIPs grouped by reason category, with counts (what this machine lacks)."""
    groups: dict[str, list] = {}
    for v in verdicts:
        if v.verdict == "SKIP":
            groups.setdefault(v.skip_category or "other", []).append(v)
    if not groups:
        return ""
    lines = [f"SKIP by reason ({sum(map(len, groups.values()))}):"]
    for cat, vs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"  {len(vs):>3}  {cat}  (e.g. {vs[0].id}: {vs[0].reason})")
    return "\n".join(lines)


def explain(v) -> str:
    """Everything a verdict rests on, in words."""
    tol = v.tolerance
    lines = [
        f"{v.id}: {v.verdict}",
        f"  claim:      {v.statement}",
        f"  source:     {v.source}",
        f"  expected:   {v.expected}"
        + (f" (accepted {v.accepted[0]:.4g} .. {v.accepted[1]:.4g})" if v.accepted else ""),
        f"  tolerance:  {tol['mode']} {tol.get('value', '')} - {tol.get('why', 'no reason given')}",
        f"  aggregate:  {v.aggregate}"
        + {
            "each": " (every group must pass; one FAIL fails the claim)",
            "best": " (up to: one group's whole band must clear the figure)",
            "mean": " (on average: mean of the groups)",
            "median": " (median of the groups)",
        }.get(v.aggregate, ""),
    ]
    if v.informative:
        lines.append("  informative: measured off the paper's conditions; never a FAIL of the paper")
    if v.unverified:
        lines.append("  unverified: the figure was not found again in the paper")
    if v.note:
        lines.append(f"  note:       {v.note}")
    for g in v.groups:
        lines.append(f"  group {g['label']}: {g['verdict']}")
        lines.append(
            f"    value {_short(g['measured'], 40)}, band {_short(g['band'], 40)} ({g.get('band_source') or '-'})"
        )
        lines.append(f"    from: {g['provenance']}")
        if g.get("rows"):
            lines.append(f"    rows: {', '.join(g['rows'][:12])}" + (" ..." if len(g["rows"]) > 12 else ""))
    lines.append(f"  why: {v.reason}")
    return "\n".join(lines)


def format_table(verdicts) -> str:
    lines = []
    by_title: dict[str, list] = {}
    for v in verdicts:
        by_title.setdefault(v.title or v.source, []).append(v)
    idw = max((len(v.id) for v in verdicts), default=2)
    for title, vs in by_title.items():
        lines.append(f"\n== {title}")
        lines.append(f"{'verdict':<12} {'id':<{idw}} {'expected':>14} {'measured':>14}  reason")
        for v in vs:
            flag = (" (unverified)" if v.unverified else "") + (" (informative)" if v.informative else "")
            lines.append(
                f"{v.verdict:<12} {v.id:<{idw}} {_short(v.expected):>14} {_short(v.measured):>14}  "
                f"{v.reason}{flag}"
            )
    counts = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    lines.append(
        "\n" + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) + f" of {len(verdicts)} verdicts"
    )
    skips = skip_summary(verdicts)
    return "\n".join(lines) + ("\n" + skips if skips else "")


def main(args: argparse.Namespace) -> int:
    from natbench.claims.judge import judge
    from natbench.claims.schema import ClaimError, load_claims
    from natbench.results import load

    try:
        claims = _selected(load_claims(args.claims), args.filter)
    except (ClaimError, FileNotFoundError) as exc:
        print(f"natbench claims: {exc}", file=sys.stderr)
        return 2
    if not claims:
        print(f"natbench claims: no claim id matches {args.filter}", file=sys.stderr)
        return 2
    dirs = [Path(d) for d in (args.results or [])]
    if args.run:
        if not dirs:
            dirs = [Path(tempfile.mkdtemp(prefix="natbench-claims-"))]
        print(f"natbench claims: running sweep preset '{RUN_PRESET}' into {dirs[0]}", file=sys.stderr)
        try:
            _run_sweep(RUN_PRESET, dirs[0])
        except ImportError as exc:
            print(
                f"natbench claims: --run needs natbench.sweep, which is not importable here: {exc}",
                file=sys.stderr,
            )
            return 2
    try:
        df = load(dirs) if dirs else None
    except FileNotFoundError as exc:
        print(f"natbench claims: {exc}; pass an existing --results DIR or add --run", file=sys.stderr)
        return 2
    from natbench.claims.replicates import sweep_name, sweeps

    frames = sweeps(df)
    if len(frames) > 1:
        print(
            f"natbench claims: {len(frames)} sweeps of the same cases ("
            + " | ".join(sweep_name(f) for f in frames)
            + "): each judged alone, each claim's values combined as replicates",
            file=sys.stderr,
        )
    verdicts = judge(df, claims)
    payload = [v.to_dict() for v in verdicts]
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    if args.explain:
        chosen = [
            v for v in verdicts if any(fnmatch.fnmatchcase(v.id, g) or v.claim_id == g for g in args.explain)
        ]
        if not chosen:
            print(f"natbench claims: no verdict id matches {args.explain}", file=sys.stderr)
            return 2
        print("\n\n".join(explain(v) for v in chosen))
    elif args.json:
        print(json.dumps(payload, indent=2))
    else:
        print(format_table(verdicts))
        if args.out:
            print(f"wrote {len(payload)} verdicts to {args.out}")
    errors = [v for v in verdicts if v.verdict == "ERROR"]
    failed = [v for v in verdicts if v.counts_for_strict]
    if errors or (args.strict and failed):  # an ERROR is natbench's own failure: never exit 0 on one
        what = failed if args.strict else errors
        print(
            f"natbench claims{' --strict' if args.strict else ''}: {len(what)} claim(s) "
            f"{'FAIL or ERROR' if args.strict else 'ERROR'}: " + ", ".join(v.id for v in what[:10]),
            file=sys.stderr,
        )
        return 1
    return 0
