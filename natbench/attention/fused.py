"""natbench's fused C++ neighborhood attention for CPU ("fused"): forward only, computed in float32.

Each query sees exactly its kh x kw keys (no halo, unlike `tiled`), one query per vector lane; see
csrc/na_cpu.cpp. Keys and values are copied once into the [B, heads, H, D, W] layout the kernel reads.
Dilated maps run per residue class. Training falls back to `tiled` through `auto` (no backward here).
"""

from __future__ import annotations

from pathlib import Path

import torch

from natbench.attention.neighborhood import per_residue_class

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


def _packed(x: torch.Tensor, batch_lanes: bool) -> torch.Tensor:
    """[B, H, W, heads, D] (any strides and float dtype) -> the contiguous float32 layout the kernel reads."""
    b, h, w, heads, d = x.shape
    if not batch_lanes:
        return torch.empty((b, heads, h, d, w), dtype=torch.float32).copy_(x.permute(0, 3, 1, 4, 2))
    groups = -(-b // LANES)
    buf = torch.empty((groups, heads, h, w, d, LANES), dtype=torch.float32)
    if groups * LANES != b:
        buf.zero_()
    view = buf.permute(0, 5, 2, 3, 1, 4)  # [groups, LANES, H, W, heads, D]
    full = b // LANES
    if full:
        view[:full].copy_(x[: full * LANES].unflatten(0, (full, LANES)))
    if full < groups:
        view[full, : b - full * LANES].copy_(x[full * LANES :])
    return buf


def _dense(q, k, v, kernel_size, rpb, scale) -> tuple[torch.Tensor, str]:
    qf = q if q.dtype == torch.float32 else q.float()
    out = torch.empty(q.shape, dtype=torch.float32)
    bias = None if rpb is None else rpb.detach().to(torch.float32).contiguous()
    batch_lanes = lanes_over_batch(q.shape[0], q.shape[2], kernel_size[1])
    kt, vt = _packed(k, batch_lanes), _packed(v, batch_lanes)
    _na_cpu.na2d_forward(qf, kt, vt, out, bias, *kernel_size, scale, batch_lanes)
    out = out if q.dtype == torch.float32 else out.to(q.dtype)
    return out, "lanes-images" if batch_lanes else "lanes-columns"


def na2d_fused(q, k, v, kernel_size, dilation, rpb, scale) -> tuple[torch.Tensor, str]:
    """Backend entry point: returns the output and the kernel that ran ("lanes-columns" or "lanes-images")."""
    if tuple(dilation) == (1, 1):
        return _dense(q, k, v, kernel_size, rpb, scale)
    return per_residue_class(lambda *maps: _dense(*maps, kernel_size, rpb, scale), q, k, v, dilation)


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
