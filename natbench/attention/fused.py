"""natbench's fused C++ neighborhood attention for CPU ("fused"): forward only, computed in float32.

Each query sees exactly its kh x kw keys (no halo, unlike `tiled`), one query per vector lane; see
csrc/na_cpu.cpp. The kernel copies keys and values once into the layout it reads, per residue class of a
dilated map, and runs every class in one parallel loop. Training falls back to `tiled` through `auto` (no
backward here).
"""

from __future__ import annotations

from pathlib import Path

import torch

ISA_FILE = Path(__file__).with_name("_na_cpu.isa")  # written by setup.py next to the kernel it builds


def missing_isa(built: Path = ISA_FILE, cpuinfo: Path = Path("/proc/cpuinfo")) -> list[str]:
    """Instruction-set flags of the CPU that built the kernel (-march=native) that this CPU lacks."""
    try:
        need = set(built.read_text().split())
        have = next(x for x in cpuinfo.read_text().splitlines() if x.startswith("flags"))
    except (OSError, StopIteration):
        return []
    return sorted(need - set(have.partition(":")[2].split()))


_na_cpu = None
_IMPORT_ERROR = ""
if _MISSING := missing_isa():
    _IMPORT_ERROR = f"it was compiled on a CPU with {', '.join(_MISSING)}, which this CPU lacks"
else:
    try:
        from natbench.attention import _na_cpu
    except ImportError as exc:  # built by `pip install -e .` when a C++ compiler is present
        _IMPORT_ERROR = str(exc)


LANES = 8 if _na_cpu is None else _na_cpu.lanes()
# A lane-column over images costs 0.85 of one over columns: 42-43 against 36-38 GFLOP/s with every lane busy
# (1 thread, fp32, k = 5..13; border blocks ran at the rate of their union's columns).
IMAGE_LANE_COST = 0.85


def _row_cost(width: int, kw: int) -> float:
    """Lane-columns one image's query row costs with lanes over columns: border blocks pay their union."""
    rw, cost, j = kw // 2, 0.0, 0
    start = [min(max(x - rw, 0), width - kw) for x in range(width)]
    has_interior = width - 2 * rw >= LANES
    while j < width:
        if rw <= j and j + LANES <= width - rw:
            n, cost = LANES, cost + kw
        else:
            n = min(rw - j, LANES) if j < rw and has_interior else min(LANES, width - j)
            cost += start[j + n - 1] + kw - start[j]
        j += n
    return cost


def lanes_over_batch(batch: int, width: int, kw: int) -> bool:
    """Lanes over images when that costs less than lanes over columns (always at batch 8: no border waste)."""
    return IMAGE_LANE_COST * -(-batch // LANES) * width * kw <= batch * _row_cost(width, kw)


def na2d_fused(q, k, v, kernel_size, dilation, rpb, scale) -> tuple[torch.Tensor, str]:
    """Backend entry point: returns the output and the kernel that ran ("lanes-columns" or "lanes-images")."""
    out = torch.empty(q.shape, dtype=torch.float32)
    bias = None if rpb is None else rpb.detach().to(torch.float32).contiguous()
    # The kernel packs k and v per residue class itself, from any strides and float dtype.
    batch_lanes = lanes_over_batch(q.shape[0], q.shape[2] // dilation[1], kernel_size[1])
    qf = q if q.dtype == torch.float32 else q.float()
    _na_cpu.na2d_forward(qf, k, v, out, bias, *kernel_size, *dilation, scale, batch_lanes)
    out = out if q.dtype == torch.float32 else out.to(q.dtype)
    return out, "lanes-images" if batch_lanes else "lanes-columns"


def build_info() -> str:
    """How the kernel was built (compiler, instruction set, lanes), or why it is missing."""
    return _na_cpu.build_info() if _na_cpu is not None else f"not built ({_IMPORT_ERROR})"


def why_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    if _na_cpu is None:
        return (
            f"natbench's C++ kernel cannot load ({_IMPORT_ERROR}); rebuild it on this machine with a C++ "
            "compiler present: pip install --no-build-isolation -e ."
        )
    if device.type != "cpu":
        return f"fused is natbench's CPU kernel, not for {device.type}; use 'natten' or 'flex'"
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return f"fused computes in float32 and takes float32/bfloat16/float16, got {dtype}; use 'tiled'"
    return None
