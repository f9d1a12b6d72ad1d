"""The `natbench` command. Each subcommand lives in its own module and is imported only when it runs."""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module with add_arguments(parser) and main(args) -> int, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "env": ("natbench.env", "print the provenance every result carries (versions, natten backends, device)"),
    "run": (
        "natbench.measure.cli",
        "measure one case (op or model) in a fresh process: latency, memory, FLOPs",
    ),
    "ab": (
        "natbench.measure.ab",
        "A/B one case from two import paths, processes interleaved so drift falls on both; then compare",
    ),
    "noise": (
        "natbench.measure.noise",
        "measure this machine's run-to-run drift once; natbench run widens its intervals by it",
    ),
    "profile": (
        "natbench.measure.profile",
        "where a model's forward spends its CPU time: per stage and part (attention, linears, layout, convs)",
    ),
    "sweep": (
        "natbench.sweep.cli",
        "run a preset grid of cases into a results directory (resumable, shardable)",
    ),
    "results": ("natbench.results", "summarize results directories; export them as CSV or Parquet"),
    "models": (
        "natbench.models.cli",
        "list the model zoo: exact params and MACs next to the paper's figures",
    ),
    "claims": (
        "natbench.claims.cli",
        "judge the papers' claims (params, speed, memory, scaling) from results",
    ),
    "accuracy": (
        "natbench.accuracy.cli",
        "ImageNet top-1/top-5 of a checkpoint (papers' recipe), or exact vs no-RPB",
    ),
    "compare": (
        "natbench.compare",
        "compare two result directories: per-case latency ratios, regressions exit 1",
    ),
    "report": ("natbench.report", "build the static results site (figures, model table, claims, history)"),
    "gpu-check": (
        "natbench.gpu_check",
        "one short GPU run: install natten (Flex), check flex/natten vs reference, time table3 + na-vs-wsa, judge",
    ),
    "reproduce": ("natbench.reproduce", "sweep a preset, judge the claims and build the report in one go"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="natbench",
        description="Benchmark and reproducibility harness for Neighborhood Attention Transformers.",
    )
    from natbench import __version__

    parser.add_argument("--version", action="version", version=f"natbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(importlib.import_module(COMMANDS[args.command][0]).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
