"""A/B: one case measured from two import paths, their processes interleaved (B A, A B, ...), so that the
machine's drift falls on both sides alike; then `natbench compare` judges B against A.

Two runs measured one after the other differ by whatever the machine did in between: on the 2-core VM a
planted 10 % slowdown measured 0.95-1.36x in sequential runs seconds apart. Interleaving the processes puts
both versions in the same minutes. What the two paths can switch is what a case process imports itself:
a custom target (`module:function`), natten, any package not preloaded. natbench, torch, timm, numpy and what
they import are imported once in the forkserver that starts every case process (`preloaded` asks one), so both
sides would run this environment's: a path holding one of them is refused.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from natbench.measure.repeat import contended, finish, quiet_reference, run_process

SIDES = ("base", "new")
MIN_REPEATS = 3  # Mann-Whitney over 2 processes a side can never reach p <= 0.05 (its smallest p is 1/6)


def _top_level_modules() -> list[str]:
    return sorted({name.split(".")[0] for name in sys.modules})


def preloaded() -> set[str]:
    """Top-level packages a case process has imported before it runs anything: asked of one such process
    (the forkserver's preload and what it imports; this module's own imports, all natbench's, on top)."""
    from natbench.measure.isolate import run_in_process

    got, status, error = run_in_process(_top_level_modules, {}, 120, "cpu")
    if got is None:
        raise RuntimeError(f"could not start a case process to see what it preloads: {status}: {error}")
    return set(got)


def check_paths(paths: dict[str, list[str]]) -> dict[str, list[str]]:
    """The sides' import paths as absolute directories; ValueError saying what to change otherwise."""
    out = {}
    loaded = None
    for side in SIDES:
        dirs = paths.get(side) or []
        if not dirs:
            raise ValueError(f"--{side} needs at least one directory (what the {side} side imports first)")
        resolved = []
        for d in dirs:
            if not d.strip():
                raise ValueError(f"--{side} has an empty directory (a stray {os.pathsep!r}?): drop it")
            p = Path(d).expanduser()
            if not p.is_dir():
                raise ValueError(f"--{side} {d}: not a directory")
            loaded = preloaded() if loaded is None else loaded
            shadowed = sorted(
                e.name.removesuffix(".py")
                for e in p.iterdir()
                if e.name.removesuffix(".py") in loaded and (e.is_dir() or e.suffix == ".py")
            )
            if shadowed:
                raise ValueError(
                    f"--{side} {d} holds {', '.join(shadowed)}, which every case process has already imported "
                    "(preloaded): both sides would run this environment's. A/B what the case imports itself "
                    "(a module:function target, natten), or compare two sweeps from two environments"
                )
            resolved.append(os.fspath(p.resolve()))
        out[side] = resolved
    return out


def run_ab(
    spec: dict[str, Any],
    paths: dict[str, list[str]],
    timeout: float | None = None,
    timing: dict | None = None,
    threads: int | None = None,
    repeats: int = 5,
    memory_limit: int | None = None,
    extra_rounds: int | None = None,
) -> dict[str, dict[str, Any]]:
    """{"base": row, "new": row}: `repeats` processes a side, in rounds base-new, new-base, ...

    A shared machine slows whole processes (their calibration reads slow: natbench.measure.repeat): while
    either side has fewer than `repeats` uncontended processes, whole rounds run again (at most
    `extra_rounds`, default `repeats`, so both sides keep meeting the same minutes), and each side's row is
    made of its `repeats` least contended processes, judged against the quiet calibration of both sides.
    A process that fails in the first `repeats` rounds ends both sides and its side's row says so; one side's
    first process unsupported still runs the other's first (the versions may differ in what they support).
    A failure in an extra round is left out of its row (`rerun_failures`), as in natbench.measure.repeat."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    extra_rounds = repeats if extra_rounds is None else extra_rounds
    paths = check_paths(paths)
    processes: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}

    def settled() -> bool:
        reference = quiet_reference([p for side in SIDES for p in processes[side]])
        return all(sum(not contended(p, reference) for p in processes[s]) >= repeats for s in SIDES)

    failed = False
    for i in range(repeats + extra_rounds):
        if failed or (i >= repeats and settled()):
            break
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            if failed and processes[side]:
                break
            got = run_process(spec, timeout, timing, memory_limit, None, threads, path=paths[side])
            processes[side].append(got)
            status = got.get("status")
            if status != "ok":
                failed = True
                if not (status == "unsupported" and not processes[_other(side)]):
                    break
    reference = quiet_reference([p for side in SIDES for p in processes[side]])
    rows = {}
    for side in SIDES:
        if not processes[side]:
            from natbench.measure.case import spec_row
            from natbench.measure.spec import CaseSpec

            other = processes[_other(side)][-1]
            rows[side] = spec_row(CaseSpec.from_dict(spec))
            rows[side].update(
                status="error",
                error=f"not measured: the {_other(side)} side's first process failed ({other.get('status')})",
            )
        else:
            rows[side] = finish(spec, processes[side], repeats, reference)
        rows[side].update(ab_side=side, ab_path=paths[side], ab_interleaved_with=paths[_other(side)])
    return rows


def judge(rows: dict[str, dict], out: Path, threshold: float, alpha: float, normalize: str = "auto"):
    """(compare's result for this case of OUT/base and OUT/new, a line on the two sides' sentinels or None)."""
    from natbench.compare import compare

    result = compare(
        out / "base",
        out / "new",
        threshold,
        filters=[rows["new"]["case_id"]],  # this case only: OUT may hold rows of earlier A/Bs
        alpha=alpha,
        normalize=normalize,
    )
    return result, sentinels(rows["base"], rows["new"], alpha)


def sentinels(base: dict, new: dict, alpha: float) -> str | None:
    """How the two sides' sentinels compare (None without them).

    The sides alternate, so their sentinels meet the same machine, except by chance (a slow spell that met
    more processes of one side: then the relative times are what tells the versions apart) or because the
    new version slows what runs beside it in its process (caches, threads left spinning): the relative times
    would then hide that part of its cost, and `--normalize calibrations` (or `off`) judges raw times."""
    from scipy.stats import mannwhitneyu

    b, n = (r.get("sentinel_process_ms") or [] for r in (base, new))
    if len(b) < 2 or len(n) < 2:
        return None
    p = float(mannwhitneyu(n, b, alternative="two-sided").pvalue)
    line = f"sentinel new/base x{float(np.median(n) / np.median(b)):.3f} (Mann-Whitney p = {p:.3g})"
    if p > alpha:
        return line
    return (
        f"{line}: the sides' sentinels differ although their processes alternated; by chance, or the new "
        "version slows what runs beside it, which relative times hide (--normalize calibrations judges raw "
        "times)"
    )


def _other(side: str) -> str:
    return SIDES[1 - SIDES.index(side)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from natbench.compare import ALPHA, NORMALIZE, THRESHOLD
    from natbench.measure.cli import add_case_arguments

    add_case_arguments(parser)
    for side, what in (("base", "the baseline"), ("new", "the version to check")):
        parser.add_argument(
            f"--{side}",
            required=True,
            metavar="DIR",
            help=f"directory (or {os.pathsep}-separated directories) put first on the import path of "
            f"{what}'s case processes",
        )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="write the two rows to DIR/base and DIR/new (results directories natbench compare reads)",
    )
    parser.add_argument("--threshold", type=float, default=THRESHOLD, help="as natbench compare's")
    parser.add_argument("--alpha", type=float, default=ALPHA, help="as natbench compare's")
    parser.add_argument(
        "--normalize",
        choices=NORMALIZE,
        default="auto",
        help="as natbench compare's (auto: relative to the sentinel)",
    )
    parser.add_argument("--json", action="store_true", help="print the comparison as JSON")


def main(args: argparse.Namespace) -> int:
    """compare's exit code: 0 no regression, 1 regression (or a failed case), 2 bad input or a case that
    cannot run here (unsupported)."""
    import tempfile

    import torch

    from natbench import results
    from natbench.compare import SENTINEL_TEST, show
    from natbench.env import collect
    from natbench.measure.cli import case_spec

    try:
        spec, timing = case_spec(args)
        if args.repeats < MIN_REPEATS:
            raise ValueError(
                f"--repeats must be >= {MIN_REPEATS} for an A/B (got {args.repeats}): with 2 processes a side "
                "Mann-Whitney's smallest p is 1/6, and compare's per-case calibrations need 5"
            )
        if not args.threshold >= 0 or not 0 < args.alpha < 1:  # before minutes of measuring, not after
            raise ValueError(
                f"--threshold must be >= 0 and --alpha in (0, 1), got {args.threshold}, {args.alpha}"
            )
        resolved = spec.resolved(torch.cuda.is_available()).to_dict()
        paths = {side: getattr(args, side).split(os.pathsep) for side in SIDES}
        rows = run_ab(
            resolved, paths, args.timeout, timing, args.threads, args.repeats
        )  # checks the paths first
    except ValueError as exc:
        print(f"natbench ab: error: {exc}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="natbench-ab-") as tmp:
        out = Path(args.out or tmp)
        env = collect()
        for side, row in rows.items():
            results.append_row(out / side, {**row, "env": env})
        failed = [
            f"{side}: {row.get('status')}: {row.get('error')}"
            for side, row in rows.items()
            if row.get("status") != "ok"
        ]
        if failed:
            print("natbench ab: " + "; ".join(failed), file=sys.stderr)
            # both unsupported: the case cannot run here; one side alone: the versions differ (a regression
            # when new lost it)
            return 2 if all(r.get("status") == "unsupported" for r in rows.values()) else 1
        try:
            result, note = judge(rows, out, args.threshold, args.alpha, args.normalize)
        except (FileNotFoundError, ValueError) as exc:
            print(f"natbench ab: error: {exc}", file=sys.stderr)
            return 2
        relative = any(SENTINEL_TEST in c.test for c in result.cases)
        show(
            result,
            args.json,
            f"A/B of {resolved.get('target')}, {args.repeats} processes a side, interleaved",
            {"sentinels": note} if note and relative else None,  # it matters only where relative times judged
        )
        if args.out and not args.json:
            print(f"rows: {out / 'base'}, {out / 'new'}")
        return result.exit_code
