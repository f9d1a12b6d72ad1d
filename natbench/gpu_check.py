"""`natbench gpu-check`: everything natbench can verify on a short GPU lease, in one command (<= 8 minutes).

On a bare H100 / H200 (torch with CUDA, timm / pandas / scipy, no natten): installs what is missing (natten's
sdist built with the GPU hidden, so without libnatten: about a minute; carried wheels), checks flex (+RPB)
forward and backward and natten's flex-fna against `reference` on CUDA, times a reduced paper-table3 (the 10
models, bf16, batch 64) and na-vs-wsa at k = 7 with CUDA events and GPU memory, judges those presets' claims
and writes one results directory. Steps that would overrun the time budget are recorded as not run.

--dry-run prints the plan and a time estimate; --stand-in runs the same steps on CPU with tiny cases.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BUDGET_S = 480.0
NATTEN_VERSION = "0.21.7"  # the version the project is tested with (constraints-cpu.txt)
REQUIRED = {"natten": "natten", "timm": "timm", "pandas": "pandas", "scipy": "scipy", "psutil": "psutil"}
TABLE3_MODELS = (
    "nat_mini",
    "nat_tiny",
    "nat_small",
    "nat_base",
    "swin_tiny",
    "swin_small",
    "swin_base",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
)
WSA_SIDES = (7, 14, 28, 56, 112, 224, 448, 896, 1792)


@dataclass(frozen=True)
class Mode:
    """What the run measures: the GPU plan, or its CPU stand-in with tiny cases."""

    device: str
    dtype: str
    models: tuple[str, ...]
    model_batch: int
    model_resolution: int
    sides: tuple[int, ...]
    heads: int
    timing: dict[str, float]
    check_shape: tuple[int, int, int, int, int]  # batch, height, width, heads, head_dim
    compile_flex: bool
    flex_backward: bool  # CPU flex has no backward: the stand-in runs it on tiled
    case_estimate_s: float  # one sweep case: a fresh process, CUDA init, warm-up, timing

    @property
    def stand_in(self) -> bool:
        return self.device == "cpu"


GPU = Mode(
    "cuda",
    "bfloat16",
    TABLE3_MODELS,
    64,
    224,
    WSA_SIDES,
    4,
    {"min_run_time": 0.5, "warmup": 0.3, "timeout": 120},
    (2, 29, 23, 2, 32),
    True,
    True,
    12.0,
)
STAND_IN = Mode(
    "cpu",
    "float32",
    ("nat_mini",),
    1,
    64,
    (14, 21),
    2,
    {"min_run_time": 0.02, "warmup": 0.01, "timeout": 120},
    (1, 15, 14, 2, 8),
    False,
    False,
    4.0,
)


@dataclass
class Step:
    name: str
    estimate_s: float
    run: Callable[[], dict[str, Any]]
    status: str = "planned"
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)


# -- install -------------------------------------------------------------------------------------------------
def missing_packages(find_spec=importlib.util.find_spec) -> list[str]:
    return [dist for module, dist in REQUIRED.items() if find_spec(module) is None]


def install_commands(missing: list[str], wheels: Path | None) -> list[tuple[list[str], dict[str, str]]]:
    """pip commands (argv, extra env) that install `missing`: from `wheels` (wheels / sdists) when given.

    natten builds from its sdist against the installed torch (--no-build-isolation) with the GPU hidden, so
    that it skips libnatten (30-45 min) and gives the Flex backend in about a minute."""
    pip = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-cache-dir"]
    source = ["--no-index", "--find-links", str(wheels)] if wheels is not None else []
    cmds = []
    for dist in missing:
        spec = f"natten=={NATTEN_VERSION}" if dist == "natten" else dist
        env = {"CUDA_VISIBLE_DEVICES": ""} if dist == "natten" else {}
        cmds.append((pip + source + [spec], env))
    return cmds


def install(missing: list[str], wheels: Path | None, runner=subprocess.run) -> dict[str, Any]:
    done = []
    for argv, env in install_commands(missing, wheels):
        proc = runner(argv, env={**os.environ, **env}, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stdout or "")[-1500:] + (proc.stderr or "")[-1500:]
            raise RuntimeError(f"{' '.join(argv)} failed (exit {proc.returncode}):\n{tail}")
        done.append(argv[-1])
    importlib.invalidate_caches()
    return {"installed": done}


# -- correctness ---------------------------------------------------------------------------------------------
def _close(got, want, atol: float, rtol: float) -> tuple[float, bool]:
    err = float((got.float() - want.float()).abs().max())
    ok = bool((got.float() - want.float()).abs().le(atol + rtol * want.float().abs()).all())
    return err, ok


def check_correctness(mode: Mode) -> dict[str, Any]:
    """Flex (+RPB) forward / backward and natten vs reference on mode.device; raises if any check fails."""
    import torch

    from natbench.attention import flex, natten_backend, tiled
    from natbench.attention.reference import na2d_reference

    dev = torch.device(mode.device)
    b, h, w, heads, d = mode.check_shape
    gen = torch.Generator().manual_seed(0)
    checks, kernels = [], set()

    def tensors(grad):
        qkv = [torch.randn(b, h, w, heads, d, generator=gen).to(dev).requires_grad_(grad) for _ in range(3)]
        rpb = torch.randn(heads, 13, 13, generator=gen).to(dev).requires_grad_(grad)
        return qkv, rpb

    def record(name, got, want, atol=2e-3, rtol=2e-3):
        err, ok = _close(got, want, atol, rtol)
        checks.append({"check": name, "max_abs_err": err, "ok": ok})

    scale = d**-0.5
    for dil in (1, 2):
        ks, dl = (7, 7), (dil, dil)
        (q, k, v), rpb = tensors(False)
        with torch.no_grad():
            ref = na2d_reference(q, k, v, ks, dl, rpb, scale)
            out, kernel = flex.na2d_flex(q, k, v, ks, dl, rpb, scale, compile=mode.compile_flex)
            kernels.add(kernel)
            record(f"flex+rpb forward d{dil} ({kernel})", out, ref)
            ref0 = na2d_reference(q, k, v, ks, dl, None, scale)
            natten_kernel = natten_backend.natten_kernel(q)
            kernels.add(f"natten:{natten_kernel}")
            out = natten_backend._natten().na2d(q, k, v, kernel_size=ks, dilation=dl, scale=scale)
            record(f"natten forward d{dil} ({natten_kernel})", out, ref0)
        (q, k, v), rpb = tensors(True)
        up = torch.randn(b, h, w, heads, d, generator=gen).to(dev)
        if mode.flex_backward:
            out, kernel = flex.na2d_flex(q, k, v, ks, dl, rpb, scale, compile=mode.compile_flex)
            name = f"flex+rpb backward d{dil} ({kernel})"
        else:
            out, kernel = tiled.na2d_tiled(q, k, v, ks, dl, rpb, scale)
            name = f"tiled+rpb backward d{dil} ({kernel}; CPU flex has no backward)"
        got = torch.autograd.grad(out, (q, k, v, rpb), up)
        want = torch.autograd.grad(na2d_reference(q, k, v, ks, dl, rpb, scale), (q, k, v, rpb), up)
        kernels.add(kernel)
        for part, g, r in zip("q k v rpb".split(), got, want):
            record(f"{name} grad {part}", g, r, atol=5e-3, rtol=5e-3)
        if mode.flex_backward:  # natten's flex-fna has a backward on CUDA only, as flex
            q0, k0, v0 = (t.detach().requires_grad_(True) for t in (q, k, v))
            out = natten_backend._natten().na2d(q0, k0, v0, kernel_size=ks, dilation=dl, scale=scale)
            got = torch.autograd.grad(out, (q0, k0, v0), up)
            want = torch.autograd.grad(na2d_reference(q0, k0, v0, ks, dl, None, scale), (q0, k0, v0), up)
            for part, g, r in zip("q k v".split(), got, want):
                record(f"natten backward d{dil} grad {part}", g, r, atol=5e-3, rtol=5e-3)
    failed = [c["check"] for c in checks if not c["ok"]]
    if failed:
        raise AssertionError(f"{len(failed)} check(s) differ from the reference: {failed}; see checks")
    return {"checks": checks, "kernels": sorted(kernels)}


# -- timing --------------------------------------------------------------------------------------------------
def reduced_presets(mode: Mode):
    """(paper-table3, na-vs-wsa) as Preset objects reduced for the lease (or the stand-in): same names."""
    from natbench.sweep.preset import load_preset

    table3, wsa = load_preset("paper-table3"), load_preset("na-vs-wsa")
    settings = {**mode.timing}
    table3 = dataclasses.replace(
        table3,
        defaults={
            **table3.defaults,
            "device": mode.device,
            "dtype": mode.dtype,
            "batch": mode.model_batch,
            "resolution": mode.model_resolution,
        },
        grids=[{"target": list(mode.models)}],
        settings={**table3.settings, **settings},
    )
    wsa = dataclasses.replace(
        wsa,
        defaults={
            **wsa.defaults,
            "device": mode.device,
            "dtype": "float32" if mode.stand_in else wsa.defaults["dtype"],
            "kernel_size": 7,
            "resolution": list(mode.sides),
            "heads": mode.heads,
        },
        settings={**wsa.settings, **settings},
    )
    return table3, wsa


def sweep_chunks(mode: Mode) -> list[tuple[Any, dict[str, list]]]:
    """(preset, grid override) in the order they run: one model, or one map size (NA and window), each."""
    table3, wsa = reduced_presets(mode)
    chunks = [(table3, {"target": [m]}) for m in mode.models]
    return chunks + [(wsa, {"resolution": [s]}) for s in mode.sides]


def run_sweeps(mode: Mode, out: Path, deadline: float, sweep=None) -> dict[str, Any]:
    """Runs the chunks until the deadline would pass; the rest are listed as not run (never faked)."""
    if sweep is None:
        from natbench.sweep import run_sweep as sweep
    ran, not_run, statuses = [], [], {}
    seen: dict[str, list[float]] = {}  # seconds per case so far, per preset: the next chunk's estimate
    for preset, grid in sweep_chunks(mode):
        label = f"{preset.name}:{','.join(f'{k}={v[0]}' for k, v in grid.items())}"
        cases = 2 if preset.name == "na-vs-wsa" else 1
        past = seen.get(preset.name)
        per_case = max(past) if past else mode.case_estimate_s
        if time.monotonic() + per_case * cases > deadline:
            not_run.append(label)
            continue
        t0 = time.monotonic()
        frame = sweep(preset, out, grid=grid, progress=False)
        seen.setdefault(preset.name, []).append((time.monotonic() - t0) / cases)
        for status in frame["status"]:
            statuses[status] = statuses.get(status, 0) + 1
        ran.append(label)
    return {"ran": ran, "not_run_budget": not_run, "statuses": statuses}


def judge_claims(out: Path) -> dict[str, Any]:
    from natbench.claims.cli import format_table
    from natbench.claims.judge import judge
    from natbench.claims.schema import load_claims
    from natbench.results import load

    claims = [c for c in load_claims() if {"paper-table3", "na-vs-wsa"} & set(c.presets)]
    verdicts = judge(load([out]), claims)
    payload = [v.to_dict() for v in verdicts]
    (out / "claims.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(format_table(verdicts))
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.verdict] = counts.get(v.verdict, 0) + 1
    return {"verdicts": counts}


# -- the plan ------------------------------------------------------------------------------------------------
def build_plan(mode: Mode, out: Path, wheels: Path | None, budget: float, start: float) -> list[Step]:
    missing = missing_packages()
    n_cases = len(mode.models) + 2 * len(mode.sides)
    return [
        Step(
            "install", 75.0 if "natten" in missing else 5.0 * len(missing), lambda: install(missing, wheels)
        ),
        Step("correctness", 45.0 if not mode.stand_in else 5.0, lambda: check_correctness(mode)),
        Step(
            "sweeps",
            mode.case_estimate_s * n_cases,
            lambda: run_sweeps(mode, out, start + budget - 20.0),
        ),
        Step("claims", 10.0, lambda: judge_claims(out)),
    ]


def format_plan(mode: Mode, steps: list[Step], out: Path, budget: float) -> str:
    lines = [
        f"natbench gpu-check plan ({'CPU stand-in' if mode.stand_in else 'GPU'}: {mode.device}, {mode.dtype})",
        f"  results directory: {out}",
    ]
    for s in steps:
        lines.append(f"  {s.name:<12} ~{s.estimate_s:>6.0f} s")
    lines.append(f"  models: {', '.join(mode.models)} (batch {mode.model_batch}, {mode.model_resolution}px)")
    lines.append(
        f"  na-vs-wsa: k = 7, maps {', '.join(f'{s}x{s}' for s in mode.sides)}, NA (auto) and window"
    )
    total = sum(s.estimate_s for s in steps)
    lines.append(
        f"  estimate {total:.0f} s of a {budget:.0f} s budget"
        + (" (over: the tail is cut)" if total > budget else "")
    )
    return "\n".join(lines)


def default_out(mode: Mode) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M")
    return Path("results") / f"gpu-check-{'cpu-stand-in' if mode.stand_in else 'cuda'}-{stamp}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dry-run", action="store_true", help="print the plan and a time estimate; run nothing"
    )
    parser.add_argument("--stand-in", action="store_true", help="run the same steps on CPU with tiny cases")
    parser.add_argument("--out", type=Path, help="results directory (default results/gpu-check-...)")
    parser.add_argument(
        "--wheels", type=Path, help="folder of carried wheels / the natten sdist (pip --no-index)"
    )
    parser.add_argument(
        "--budget", type=float, default=BUDGET_S, help="seconds for the whole run (default 480)"
    )


def main(args: argparse.Namespace) -> int:
    import torch

    start = time.monotonic()
    mode = STAND_IN if args.stand_in else GPU
    if args.budget <= 0:
        print("natbench gpu-check: --budget must be > 0 seconds", file=sys.stderr)
        return 2
    if args.wheels is not None and not args.wheels.is_dir():
        print(f"natbench gpu-check: --wheels {args.wheels} is not a directory", file=sys.stderr)
        return 2
    out = args.out or default_out(mode)
    steps = build_plan(mode, out, args.wheels, args.budget, start)
    print(format_plan(mode, steps, out, args.budget), flush=True)
    if args.dry_run:
        return 0
    if not mode.stand_in and not torch.cuda.is_available():
        print("natbench gpu-check: no CUDA device here; use --dry-run or --stand-in on CPU", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    failed = False
    for step in steps:
        t0 = time.monotonic()
        try:
            step.detail = step.run()
            step.status = "ok"
        except Exception as exc:  # one step failing must not lose the others' results
            step.status, step.detail = "error", {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
        step.seconds = time.monotonic() - t0
        print(f"[gpu-check] {step.name}: {step.status} in {step.seconds:.1f} s", flush=True)
        if step.status == "error":
            print(f"[gpu-check]   {step.detail['error'][:2000]}", file=sys.stderr, flush=True)
    sweeps = next(s for s in steps if s.name == "sweeps")
    errors = sweeps.detail.get("statuses", {}).get("error", 0) + sweeps.detail.get("statuses", {}).get(
        "timeout", 0
    )
    summary = {
        "mode": "cpu-stand-in" if mode.stand_in else "gpu",
        "device": torch.cuda.get_device_name(0) if not mode.stand_in else "cpu",
        "torch": torch.__version__,
        "seconds": time.monotonic() - start,
        "budget_s": args.budget,
        "steps": [
            {k: getattr(s, k) for k in ("name", "status", "seconds", "estimate_s", "detail")} for s in steps
        ],
    }
    (out / "gpu-check.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    print(f"[gpu-check] wrote {out} in {summary['seconds']:.0f} s", flush=True)
    if errors:
        print(
            f"[gpu-check] {errors} sweep case(s) ended in error or timeout (see {out}/logs)", file=sys.stderr
        )
    return 1 if failed or errors else 0
