"""The papers' published numbers for the report, read from the claims registry (one place for every figure)."""

from __future__ import annotations

import re
from typing import Any

from natbench.claims.schema import Claim, load_claims

LABELS = {
    "nat_mini": "NAT-Mini",
    "nat_tiny": "NAT-Tiny",
    "nat_small": "NAT-Small",
    "nat_base": "NAT-Base",
    "swin_tiny": "Swin-Tiny",
    "swin_small": "Swin-Small",
    "swin_base": "Swin-Base",
    "convnext_tiny": "ConvNeXt-T",
    "convnext_small": "ConvNeXt-S",
    "convnext_base": "ConvNeXt-B",
}
TABLE3 = re.compile(r"^(?:nat|convnext)\.table3\.(throughput|memory)\.([a-z]+_[a-z]+)_vs_([a-z]+_[a-z]+)$")
POINT = re.compile(r"^(?:nat\.table3|swin|convnext)\.([a-z]+_[a-z]+)\.(params|macs|top1)$")
CURVE = re.compile(r"^nat\.natten\.(speed|memory|plain_speed)\.r(\d+)$")
CURVE_KEYS = {
    "speed": "speed_tiled_cuda",
    "memory": "memory_tiled_cuda",
    "plain_speed": "speed_plain_pytorch",
}
UNITS = {"params": ("params_m", 1e-6), "macs": ("gmacs", 1e-9), "top1": ("top1", 1.0)}


def paper_figures(claims: list[Claim] | None = None) -> dict[str, Any]:
    """{"na_vs_wsa": curves by resolution (%), "table3": {"models": {name: {...}}}, "registry": claim ids used}."""
    claims = load_claims() if claims is None else claims
    models: dict[str, dict[str, Any]] = {n: {"label": label} for n, label in LABELS.items()}
    curves: dict[str, dict[int, float]] = {key: {} for key in CURVE_KEYS.values()}
    used, sources = [], {}
    for c in claims:
        m = CURVE.match(c.id)
        if m:
            curves[CURVE_KEYS[m[1]]][int(m[2])] = round(100 * c.expected, 6)
            sources["na_vs_wsa"] = c.source
            used.append(c.id)
            continue
        m = POINT.match(c.id)
        if m and m[1] in models and isinstance(c.expected, (int, float)):
            key, unit = UNITS[m[2]]
            models[m[1]][key] = round(c.expected * unit, 6)
            used.append(c.id)
            continue
        m = TABLE3.match(c.id)
        if m and c.expected_ratio and m[2] in models and m[3] in models:
            key = "throughput" if m[1] == "throughput" else "memory_gb"
            models[m[2]][key], models[m[3]][key] = c.expected_ratio
            sources.setdefault("table3", c.source)
            used.append(c.id)
    resolutions = sorted(curves["speed_tiled_cuda"])
    return {
        "na_vs_wsa": {
            "source": sources.get("na_vs_wsa", ""),
            "resolutions": resolutions,
            **{key: [v[r] for r in sorted(v)] for key, v in curves.items()},
        },
        "table3": {
            "source": "NAT paper Table 3: ImageNet-1K 224x224, A100, batch 256, forward",
            "models": models,
        },
        "registry": used,
    }
