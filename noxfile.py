"""nox sessions of natbench. They reuse the environment nox runs from (no per-session virtualenvs:
installing torch per session is too slow), so run nox from the project's environment:

    .venv/bin/nox -s tests            # pytest (extra args after --)
    .venv/bin/nox -s lint             # ruff check + ruff format --check
    .venv/bin/nox -s bench            # asv check + a quick asv run of a small selection (what CI runs)
    .venv/bin/nox -s bench -- full    # every asv benchmark, results recorded for asv publish / asv preview
    .venv/bin/nox -s claims -- DIR    # judge the papers' claims on DIR (default out/cpu-quick, swept if empty)
    .venv/bin/nox -s accuracy -- nat_mini,swin_tiny=CKPT /data/imagenet/val   # or NATBENCH_IMAGENET=...
    .venv/bin/nox -s report -- DIR [DIR ...]   # static site into the last DIR's site/, checked in Chromium
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "tests"]

PY = sys.executable  # the interpreter nox runs in: the project's environment
DEFAULT_RESULTS = "out/cpu-quick"
# CI's asv selection: cheap cases of every benchmark class; on CPU the CUDA case is recorded as skipped
ASV_CI_BENCH = [
    r"^asv_ops\.NeighborhoodAttentionCPU\.time_forward\('(fused|tiled|reference)'",
    r"^asv_ops\.NeighborhoodAttentionCPU\.track_peak_mem\('tiled', 7, 14\)",
    r"^asv_ops\.(WindowAttentionCPU|FullAttentionCPU)\.time_forward",
    r"^asv_ops\.AttentionCUDA\.track_latency_ms\('na:natten', 7, 56, 'float16'\)",
    r"^asv_models\.ModelInfo\.",
    r"^asv_models\.ModelForwardCPU\.time_forward",
]


def _asv(session: nox.Session, *args: str, **kwargs) -> None:
    session.run(PY, "-m", "asv", *args, external=True, **kwargs)


@nox.session(python=False)
def tests(session: nox.Session) -> None:
    """pytest over tests/ (pass pytest arguments after --)."""
    session.run(PY, "-m", "pytest", *(session.posargs or ["-q"]), external=True)


@nox.session(python=False)
def lint(session: nox.Session) -> None:
    """ruff lint and format check of the whole project."""
    session.run(PY, "-m", "ruff", "check", ".", external=True)
    session.run(PY, "-m", "ruff", "format", "--check", ".", external=True)


@nox.session(python=False)
def bench(session: nox.Session) -> None:
    """asv against the installed environment. No args: `asv check` and a quick dry run of ASV_CI_BENCH.
    `-- full`: every benchmark (NATBENCH_ASV_FULL=1 grids), recorded under .asv/results, then `asv publish`."""
    _asv(session, "machine", "--yes")  # asv refuses to run before the machine is described
    _asv(session, "check", "--python=same")
    if session.posargs[:1] == ["full"]:
        sha = session.run("git", "rev-parse", "HEAD", silent=True, external=True).strip()
        # results of an existing environment are only saved when they are pinned to a commit
        _asv(
            session,
            "run",
            "--python=same",
            f"--set-commit-hash={sha}",
            "--show-stderr",
            *session.posargs[1:],
            env={"NATBENCH_ASV_FULL": "1"},
        )
        _asv(session, "publish")
        session.log("site in .asv/html: view it with `.venv/bin/asv preview` (http://127.0.0.1:8080)")
        return
    bench_args = [f"--bench={regex}" for regex in ASV_CI_BENCH]
    _asv(
        session,
        "run",
        "--python=same",
        "--quick",
        "--dry-run",
        "--show-stderr",
        *bench_args,
        *session.posargs,
    )


@nox.session(python=False)
def claims(session: nox.Session) -> None:
    """Judge the claims on a results dir (default out/cpu-quick; swept first when it has no results)."""
    results = Path(session.posargs[0] if session.posargs else DEFAULT_RESULTS)
    has_rows = (results / "results.jsonl").is_file() or any((results / "rows").glob("*.jsonl"))
    run = [] if has_rows else ["--run"]  # a directory with rows is judged as it is, never swept again
    session.run(
        PY,
        "-m",
        "natbench",
        "claims",
        "--results",
        str(results),
        *run,
        "--out",
        str(results / "claims.json"),
        external=True,
    )


@nox.session(python=False)
def accuracy(session: nox.Session) -> None:
    """ImageNet top-1/top-5: `-- MODEL[=CHECKPOINT][,...] [DATA] [OUT]`; DATA defaults to $NATBENCH_IMAGENET.
    NAT models default to the shi-labs hub checkpoints (from the local Hugging Face cache)."""
    specs = (session.posargs[0] if session.posargs else "nat_mini").split(",")
    data = session.posargs[1] if len(session.posargs) > 1 else os.environ.get("NATBENCH_IMAGENET")
    if not data or not Path(data).is_dir():
        session.log(
            f"SKIPPED accuracy: no ImageNet validation folder (got {data!r}); pass it as "
            "`nox -s accuracy -- MODELS DATA` or set NATBENCH_IMAGENET"
        )
        return
    out = session.posargs[2] if len(session.posargs) > 2 else DEFAULT_RESULTS
    for spec in specs:
        model, _, checkpoint = spec.partition("=")
        if not checkpoint and model.startswith("nat_"):
            checkpoint = f"shi-labs/nat-{model.removeprefix('nat_')}-in1k-224"
        if not checkpoint:
            session.error(f"no default checkpoint for {model}: pass {model}=PATH_OR_HUB_ID")
        session.run(
            PY,
            "-m",
            "natbench",
            "accuracy",
            "--model",
            model,
            "--checkpoint",
            checkpoint,
            "--data",
            data,
            "--out",
            out,
            external=True,
        )


@nox.session(python=False)
def report(session: nox.Session) -> None:
    """Static site from results dirs (oldest first) into LAST_DIR/site; checked in Chromium when present."""
    dirs = session.posargs or [DEFAULT_RESULTS]
    check = ["--check"] if shutil.which("chromium") or shutil.which("chromium-browser") else []
    if not check:
        session.log("chromium not found: building the report without the browser check")
    session.run(
        PY,
        "-m",
        "natbench",
        "report",
        "--results",
        *dirs,
        "--out",
        str(Path(dirs[-1]) / "site"),
        *check,
        external=True,
    )
