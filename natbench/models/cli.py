"""`natbench models`: the model zoo with exact params and MACs next to the paper's figures."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print a JSON list of model_info dicts")
    parser.add_argument("--resolution", type=int, default=224, help="input resolution for MACs (default 224)")
    parser.add_argument(
        "--filter", default=None, metavar="GLOB", help="only models matching GLOB, e.g. 'nat_*'"
    )


def main(args: argparse.Namespace) -> int:
    from natbench.models import list_models, model_info

    names = list_models(args.filter)
    if not names:
        print(f"no model matches {args.filter!r}; known: {', '.join(list_models())}")
        return 2
    rows = [model_info(name, args.resolution) for name in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'name':<15} {'family':<9} {'params':>11} {'GMACs':>7} {'paper params':>12} {'paper GMACs':>11} {'res':>4}"
    print(header)
    print("-" * len(header))
    for r in rows:
        pp = f"{r['paper_params'] / 1e6:.0f}M" if r["paper_params"] else "-"
        pg = f"{r['paper_gmacs']:.1f}" if r["paper_gmacs"] else "-"
        print(
            f"{r['name']:<15} {r['family']:<9} {r['params']:>11,} {r['macs'] / 1e9:>7.2f} {pp:>12} {pg:>11} "
            f"{r['resolution']:>4}"
        )
    return 0
