"""Provenance: the software and hardware every natbench result was measured on."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "torchvision", "timm", "natten", "numpy", "pandas", "natbench")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_sha() -> str | None:
    root = Path(__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    dirty = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
        capture_output=True,
        text=True,
        timeout=5,
    ).stdout.strip()
    return out.stdout.strip() + ("-dirty" if dirty else "")


def _gpu() -> dict[str, Any] | None:
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    gpu: dict[str, Any] = {
        "name": props.name,
        "count": torch.cuda.device_count(),
        "capability": f"{props.major}.{props.minor}",
        "memory_bytes": props.total_memory,
        "cuda": torch.version.cuda,
    }
    try:
        query = "driver_version,clocks.sm,clocks.max.sm,clocks.mem"
        out = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode == 0:
            driver, sm, sm_max, mem = (s.strip() for s in out.stdout.splitlines()[0].split(","))
            gpu.update(driver=driver, clock_sm_mhz=sm, clock_sm_max_mhz=sm_max, clock_mem_mhz=mem)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        pass
    return gpu


def natten_info() -> dict[str, Any]:
    info: dict[str, Any] = {"version": _version("natten")}
    try:
        import natten

        info["has_libnatten"] = bool(natten.HAS_LIBNATTEN)
    except Exception as exc:
        info["import_error"] = f"{type(exc).__name__}: {exc}"
    return info


def backend_table() -> dict[str, str]:
    """Each NA backend and whether it runs here ("ok" or the reason it cannot), fp32, no RPB."""
    import torch

    from natbench.attention import backends, unavailable_reason

    device = "cuda" if torch.cuda.is_available() else "cpu"
    return {name: unavailable_reason(name, device) or "ok" for name in sorted(backends())}


def _fused_build() -> str:
    from natbench.attention import fused

    return fused.build_info()


@lru_cache(maxsize=1)
def collect() -> dict[str, Any]:
    """The provenance dict stored with every result (computed once per process)."""
    import torch

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {p: _version(p) for p in PACKAGES},
        "natten": natten_info(),
        "na_backends": backend_table(),
        "na_fused_kernel": _fused_build(),
        "cpu": {"model": _cpu_model(), "cores": os.cpu_count(), "affinity": len(os.sched_getaffinity(0))},
        "torch_threads": torch.get_num_threads(),
        "gpu": _gpu(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "git_sha": _git_sha(),
        "hostname": platform.node(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    return env


def machine_key(env: dict[str, Any], device: str, threads: int | None = None) -> str:
    """Readable hardware key a series is drawn per: "cpu:<model>:<threads>t" or "cuda:<GPU name>"."""
    if device == "cuda":
        gpu = env.get("gpu") or {}
        return f"cuda:{gpu.get('name') or 'unknown GPU'}"
    return f"cpu:{env['cpu']['model']}:{threads or env['torch_threads']}t"


def fingerprint(env: dict[str, Any], device: str, threads: int | None, timing: dict[str, Any]) -> str:
    """Short hash of what a measurement depends on besides its spec: the machine, the torch / natten /
    natbench versions and git sha, and the timer settings (all of TimerConfig, defaults filled)."""
    from natbench.measure.timer import TimerConfig

    pk = env["packages"]
    parts = {
        "machine": machine_key(env, device, threads),
        "torch": pk.get("torch"),
        "natten": pk.get("natten"),
        "natbench": pk.get("natbench"),
        "git_sha": env.get("git_sha"),
        "cuda": (env.get("gpu") or {}).get("cuda") if device == "cuda" else None,
        "timer": TimerConfig.from_dict(timing).to_dict(),
    }
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def gpu_index() -> int | None:
    """The physical GPU a worker pinned with CUDA_VISIBLE_DEVICES=<i> runs on (its cuda:0), else None."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
    return int(visible) if visible.isdigit() else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _drift_line(env: dict[str, Any]) -> str:
    """This machine's `natbench noise` profile for torch's threads, in words."""
    from natbench.measure import drift

    try:
        profile = drift.load(None, env)
    except ValueError as exc:
        return f"unreadable: {exc}"
    if profile is None:
        others = "; ".join(
            f"for {n} thread(s) {p.pooled_floor:.1%}, measured {p.measured_at} "
            f"(`natbench run --threads {n}` takes it)"
            for n, p in drift.other_threads(env).items()
        )
        return (
            f"not measured for {env['torch_threads']} thread(s) (natbench noise): natbench run intervals hold "
            "their processes' spread only" + (f"; {others}" if others else "")
        )
    per_op = ", ".join(f"{name} {profile.probe_drift(name):.1%}" for name in profile.probes)
    pooled = f" (pooled with {len(profile.earlier)} earlier)" if profile.earlier else ""
    return f"{profile.pooled_floor:.1%} over {profile.span_s:g} s, measured {profile.measured_at}{pooled}" + (
        f"; per op (what a short run of that op takes; other ops the largest): {per_op}" if per_op else ""
    )


def main(args: argparse.Namespace) -> int:
    env = collect()
    if args.json:
        print(json.dumps(env, indent=2))
        return 0
    pk = env["packages"]
    rows = [("python", env["python"])] + [(p, pk[p] or "not installed") for p in PACKAGES]
    nat = env["natten"]
    rows.append(("natten libnatten", str(nat.get("has_libnatten", nat.get("import_error")))))
    rows += [(f"NA backend {k}", v) for k, v in env["na_backends"].items()]
    rows.append(("fused kernel build", env.get("na_fused_kernel", "unknown")))
    cpu = env["cpu"]
    rows.append(("cpu", f"{cpu['model']} ({cpu['cores']} cores, {cpu['affinity']} usable)"))
    rows.append(("torch threads", str(env["torch_threads"])))
    gpu = env["gpu"]
    rows.append(
        ("gpu", "none (CUDA not available)" if gpu is None else ", ".join(f"{k}={v}" for k, v in gpu.items()))
    )
    rows.append(("git sha", env["git_sha"] or "not a git checkout"))
    rows.append(("drift floor", _drift_line(env)))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
