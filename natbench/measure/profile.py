"""`natbench profile MODEL`: where a model's forward spends its time, per stage and per part, via torch.profiler.

Every module's forward is wrapped in a profiler range named after its qualified name; each aten op's self time
goes to the innermost module around it. Parts: attn (the attention op: SDPA, masks, NA kernels), attn-layout
(copies / permutes inside the attention modules), qkv / proj / mlp (linears; NAT's fused qkv GEMM too), conv, norm, layout (copies and
rolls elsewhere), other (activations, residual adds, python between ops).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import nn

PREFIX = "nb::"
LAYOUT_OPS = frozenset(
    {
        "aten::copy_",
        "aten::clone",
        "aten::contiguous",
        "aten::roll",
        "aten::cat",
        "aten::constant_pad_nd",
        "aten::index",
        "aten::repeat",
        "aten::_unsafe_view",
        "aten::reshape",
        "aten::view",
        "aten::permute",
        "aten::transpose",
        "aten::unfold",
        "aten::as_strided",
        "aten::empty",
        "aten::empty_like",
        "aten::zero_",
        "aten::fill_",
    }
)
GEMMS = frozenset({"aten::linear", "aten::addmm", "aten::mm", "aten::matmul"})
PARTS = ("attn", "attn-layout", "qkv", "proj", "mlp", "conv", "norm", "layout", "other")
_STAGE = re.compile(r"(?:levels|layers|stages)\.(\d+)")
_ATTN = ("attention.self", "attn")  # NAT's NeighborhoodAttention, timm's WindowAttention


def stage_of(name: str) -> str:
    """Module path -> "stem", "stage1".., "head" (NAT: nat.encoder.levels.i; timm: layers.i / stages.i)."""
    m = _STAGE.search(name)
    if m:
        return f"stage{int(m.group(1)) + 1}"
    if "embed" in name or name.startswith("stem"):
        return "stem"
    return "head"


def part_of(name: str, module: nn.Module) -> str:
    """The part a leaf module's own ops count as."""
    leaf = name.rsplit(".", 1)[-1]
    if isinstance(module, nn.Conv2d):
        return "conv"
    if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d, nn.GroupNorm)) or "norm" in leaf:
        return "norm"
    if isinstance(module, nn.Linear):
        if leaf in ("query", "key", "value", "qkv"):
            return "qkv"
        if leaf == "proj" or name.endswith("attention.output.dense"):
            return "proj"
        if "classifier" in name or leaf in ("fc", "head") or name.startswith("head"):
            return "other"
        return "mlp"
    if any(name.endswith(a) for a in _ATTN):
        return "attn"
    return "other"


def _wrap(model: nn.Module) -> Callable[[], None]:
    handles, ranges = [], {}
    for name, module in model.named_modules():
        if not name:
            continue

        def pre(mod, args, name=name):
            r = torch.autograd.profiler.record_function(PREFIX + name)
            r.__enter__()
            ranges.setdefault(name, []).append(r)

        def post(mod, args, out, name=name):
            ranges[name].pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    def remove():
        for h in handles:
            h.remove()

    return remove


def breakdown(events, modules: dict[str, nn.Module]) -> dict[tuple[str, str], float]:
    """(stage, part) -> self CPU microseconds summed over `events` (profiler FunctionEvents)."""
    out: dict[tuple[str, str], float] = defaultdict(float)
    for ev in events:
        owner, parent = None, ev if ev.name.startswith(PREFIX) else ev.cpu_parent
        while parent is not None and owner is None:
            if parent.name.startswith(PREFIX):
                owner = parent.name[len(PREFIX) :]
            parent = parent.cpu_parent
        if owner is None or owner not in modules:
            continue
        part = part_of(owner, modules[owner])
        parent_op = ev.cpu_parent.name if ev.cpu_parent is not None else ""
        if part == "attn" and owner.endswith("attention.self") and (ev.name in GEMMS or parent_op in GEMMS):
            part = "qkv"  # NAT's fused q/k/v GEMM runs inside the attention module, not in a Linear
        elif parent_op in GEMMS:
            pass  # addmm's bias copy belongs to its GEMM
        elif ev.name in LAYOUT_OPS:
            in_attn = any(owner.endswith(a) or f"{a}." in owner for a in _ATTN)
            part = "attn-layout" if in_attn else ("layout" if part in ("other", "attn") else part)
        out[(stage_of(owner), part)] += ev.self_cpu_time_total
    return dict(out)


def profile_model(
    model: nn.Module, inputs: torch.Tensor, iterations: int = 3, warmup: int = 2
) -> dict[tuple[str, str], float]:
    """(stage, part) -> milliseconds per forward, averaged over `iterations` profiled forwards."""
    from torch.profiler import ProfilerActivity, profile

    modules = dict(model.named_modules())
    with torch.inference_mode():
        for _ in range(warmup):
            model(inputs)
        remove = _wrap(model)
        try:
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(iterations):
                    model(inputs)
        finally:
            remove()
    table = breakdown(prof.events(), modules)
    return {key: us / 1e3 / iterations for key, us in table.items()}


def format_table(title: str, table: dict[tuple[str, str], float]) -> str:
    stages = sorted({s for s, _ in table}, key=lambda s: (s != "stem", s == "head", s))
    parts = [p for p in PARTS if any(k[1] == p for k in table)]
    head = f"{'ms/forward':<10}" + "".join(f"{p:>12}" for p in parts) + f"{'total':>10}"
    lines = [title, head]
    for s in stages:
        row = [table.get((s, p), 0.0) for p in parts]
        lines.append(f"{s:<10}" + "".join(f"{x:>12.2f}" for x in row) + f"{sum(row):>10.2f}")
    tot = [sum(v for (_, p), v in table.items() if p == q) for q in parts]
    lines.append(f"{'total':<10}" + "".join(f"{x:>12.2f}" for x in tot) + f"{sum(tot):>10.2f}")
    share = sum(tot) or 1.0
    lines.append(f"{'share':<10}" + "".join(f"{100 * x / share:>11.1f}%" for x in tot))
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("models", nargs="+", help="registered model names (natbench models)")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    parser.add_argument(
        "--dtype", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"]
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--channels-last", action="store_true", help="input in channels_last memory format")


def main(args) -> int:
    from natbench.models.registry import create_model

    if args.threads < 1 or args.iterations < 1 or min(args.batch) < 1:
        raise SystemExit("natbench profile: --threads, --iterations and --batch must be >= 1")
    torch.set_num_threads(args.threads)
    for name in args.models:
        for dtype_name in args.dtype:
            dtype = getattr(torch, dtype_name)
            model = create_model(name).eval().to(dtype)
            for batch in args.batch:
                x = torch.randn(batch, 3, args.resolution, args.resolution, dtype=dtype)
                if args.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                table = profile_model(model, x, iterations=args.iterations)
                print(
                    format_table(
                        f"\n{name} batch {batch} {dtype_name} {args.resolution}px {args.threads} threads",
                        table,
                    )
                )
    return 0
