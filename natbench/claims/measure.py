"""What natbench measured for a claim: rows picked from the results table, or natbench's model code run now.

Each method returns either a skip reason (why nothing measures the claim here) or Measurements: a value with
its noise band (low, high) and where it came from.
"""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from natbench.claims.scaling import fit_power_law
from natbench.claims.schema import Claim

IMAGENET_VAL_IMAGES = 50_000
FUSED_NATTEN = ("natten:cutlass-*", "natten:hopper-*", "natten:blackwell-*", "natten:fna*")
DEFAULT_MATCH = [
    "device",
    "device_name",
    "dtype",
    "mode",
    "batch",
    "resolution",
    "kernel_size",
    "dilation",
    "heads",
    "head_dim",
]
DEFAULT_PER = [
    "device",
    "device_name",
    "backend",
    "kernel",
    "dtype",
    "mode",
    "batch",
    "kernel_size",
    "dilation",
    "heads",
    "head_dim",
]
LABEL_ALWAYS = ("device", "backend", "kernel", "dtype")
# result columns a sweep's --grid KEY=V1,V2 can set
GRID_KEYS = {
    "target",
    "backend",
    "dtype",
    "mode",
    "batch",
    "resolution",
    "kernel_size",
    "dilation",
    "heads",
    "head_dim",
}


@dataclass
class Measurement:
    label: str
    value: Any
    low: Any
    high: Any
    provenance: str


@dataclass
class Outcome:
    """Either skip (a reason in words) or measurements; `expand` gives each measurement its own verdict."""

    skip: str | None = None
    measurements: list[Measurement] = field(default_factory=list)
    expand: bool = False
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- row selection


def _is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _matches(series, want):
    wants = want if isinstance(want, list) else [want]
    mask = None
    for w in wants:
        if isinstance(w, str) and any(c in w for c in "*?["):
            m = series.map(lambda v, w=w: isinstance(v, str) and fnmatch.fnmatchcase(v, w))
        else:
            m = series.map(lambda v, w=w: not _is_missing(v) and v == w)
        mask = m if mask is None else (mask | m)
    return mask.astype(bool)


def _preset_hint(claim: Claim, gpu: bool = False) -> str:
    if not claim.presets:
        return ""
    return (
        f" (run natbench sweep --preset {claim.presets[0]}"
        + (" on a machine with a GPU" if gpu else "")
        + ")"
    )


def _no_preset(claim: Claim, gpu: bool) -> str:
    where = " on a machine with a GPU" if gpu else ""
    return f"no results for preset {' / '.join(claim.presets)}: run natbench sweep --preset {claim.presets[0]}{where}"


def _libnatten_in(rows) -> bool | None:
    seen = None
    for env in rows.get("env", []):
        if isinstance(env, dict):
            has = (env.get("natten") or {}).get("has_libnatten")
            if has is not None:
                seen = bool(seen) or bool(has)
    if seen is None:
        from natbench.env import natten_info

        seen = natten_info().get("has_libnatten")
    return seen


def select(df, claim: Claim, where: dict[str, Any] | None, side: str = "") -> tuple[Any, str | None]:
    """Rows of `df` that can measure `claim` (its presets, requires, status ok, then `where`) or why none."""
    req = claim.requires
    gpu = req.get("device") == "cuda"
    needs = (
        "needs CUDA" + (" and natten's compiled kernels (libnatten)" if req.get("libnatten") else "") + ": "
    )
    needs = needs if gpu else ""
    accuracy_hint = (
        "needs ImageNet at --data and the checkpoints: no accuracy rows in the results "
        "(run natbench accuracy --data DIR --results DIR)"
    )
    if df is None or len(df) == 0:
        if req.get("imagenet") or req.get("checkpoints"):
            return None, accuracy_hint
        if claim.presets:
            return None, needs + _no_preset(claim, gpu)
        return None, needs + "no results to judge: pass --results DIR"
    rows = df
    if claim.presets:
        rows = rows[_matches(rows["preset"], list(claim.presets))]
        if len(rows) == 0:
            return None, needs + _no_preset(claim, gpu)
    device = req.get("device", "any")
    if device != "any":
        kept = rows[rows["device"] == device]
        if len(kept) == 0:
            if gpu:
                return None, needs + "no rows in the results were measured on a cuda device" + _preset_hint(
                    claim, gpu
                )
            return None, f"needs rows measured on {device}" + _preset_hint(claim)
        rows = kept
    kept = rows[rows["status"] == "ok"]
    if len(kept) == 0:
        counts = ", ".join(f"{n} {s}" for s, n in rows["status"].value_counts().items())
        return None, f"no case finished ok ({counts}; see the results' error column)" + _preset_hint(
            claim, gpu
        )
    rows = kept
    if "gpu" in req:
        kept = rows[rows["device_name"].map(lambda n: isinstance(n, str) and req["gpu"].lower() in n.lower())]
        if len(kept) == 0:
            names = sorted({str(n) for n in rows["device_name"].dropna()}) or ["none"]
            return None, f"needs an NVIDIA {req['gpu']} GPU (results are from: {', '.join(names)})"
        rows = kept
    if "dtype" in req:
        kept = rows[_matches(rows["dtype"], req["dtype"])]
        if len(kept) == 0:
            return None, f"needs {req['dtype']} rows (results have {sorted(set(rows['dtype'].dropna()))})"
        rows = kept
    for key, want in (where or {}).items():
        kept = rows[_matches(rows[key], want)]
        if len(kept) == 0:
            if key == "kind" and want == "accuracy":
                return None, accuracy_hint
            if key == "kernel" and req.get("libnatten"):
                has = _libnatten_in(rows)
                if not has:
                    return None, "needs natten's compiled kernels (HAS_LIBNATTEN is False)"
                return (
                    None,
                    "needs natten's compiled kernels: no row ran a fused natten kernel ("
                    + ", ".join(FUSED_NATTEN)
                    + ")",
                )
            hint = _preset_hint(claim, gpu)
            if key in GRID_KEYS and claim.presets:  # the presets do not run it: say how to add it
                values = ",".join(map(str, want if isinstance(want, list) else [want]))
                hint = f" (run natbench sweep --preset {claim.presets[0]} --grid {key}={values}" + (
                    " on a machine with a GPU)" if gpu else ")"
                )
            return None, f"no {side + ' ' if side else ''}rows with {key} = {want!r}" + hint
        rows = kept
    return rows, None


# ---------------------------------------------------------------- values with noise bands


def _band(row, name: str) -> tuple[float, float, float]:
    """Value of column `name` in one row and its noise band from the latency IQR (zero-width without one)."""
    lat = row.get("latency_ms")
    iqr = row.get("latency_iqr_ms")
    half = 0.0 if _is_missing(iqr) else float(iqr) / 2
    if name == "latency_ms":
        v = float(lat)
        return v, max(v - half, 1e-12), v + half
    rel = half / float(lat) if not _is_missing(lat) and float(lat) > 0 else 0.0
    if name == "throughput":
        v = row.get("throughput")
        if _is_missing(v):
            v = float(row["batch"]) * 1000.0 / float(lat)
        v = float(v)
        return v, v / (1 + rel), (v / (1 - rel) if rel < 1 else math.inf)
    if name == "flops_rate":
        v = float(row["flops"]) / (float(lat) / 1000.0)
        return v, v / (1 + rel), (v / (1 - rel) if rel < 1 else math.inf)
    v = row.get(name)
    if _is_missing(v):
        raise KeyError(name)
    v = float(v)
    return v, v, v


def _describe(row, extra: tuple[str, ...] = ()) -> str:
    parts = [
        f"{k}={row.get(k)}" for k in ("target", "backend", "kernel", *extra) if not _is_missing(row.get(k))
    ]
    return " ".join(parts)


def _group_label(values: dict[str, Any], varying: set[str]) -> str:
    parts = []
    for key, v in values.items():
        if _is_missing(v) or v == "-":
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if key in LABEL_ALWAYS:
            parts.append(str(v))
        elif key in varying:
            parts.append(f"{key}={v}")
    return "/".join(parts) or "all"


def _aggregate(ms: list[Measurement], how: str) -> list[Measurement]:
    if how == "each" or len(ms) <= 1:
        return ms
    fn = {"max": np.max, "min": np.min, "mean": np.mean, "median": np.median}[how]
    vals = [m.value for m in ms]
    value = float(fn(vals))
    if how in ("max", "min"):
        best = ms[int(np.argmax(vals) if how == "max" else np.argmin(vals))]
        prov = f"{how} over {len(ms)} groups, at {best.label}: {best.provenance}"
    else:
        prov = f"{how} over {len(ms)} groups: " + "; ".join(f"{m.label}: {m.value:.4g}" for m in ms)
    return [
        Measurement(
            label=f"{how} of {len(ms)}",
            value=value,
            low=float(fn([m.low for m in ms])),
            high=float(fn([m.high for m in ms])),
            provenance=prov,
        )
    ]


# ---------------------------------------------------------------- methods


@lru_cache(maxsize=64)
def _model_info(model: str, resolution: int) -> dict:
    from natbench.models import model_info

    return model_info(model, resolution=resolution)


@lru_cache(maxsize=8)
def _timm_info(timm_model: str, resolution: int) -> dict:
    """params and MACs of a timm architecture natbench does not register (e.g. Swin-B 384, window 12)."""
    import timm
    import torch

    from natbench.models.info import count_macs

    with torch.device("meta"):
        model = timm.create_model(timm_model, pretrained=False).eval()
        params = sum(p.numel() for p in model.parameters())
        macs = count_macs(model, torch.empty(1, 3, resolution, resolution))
    return {"params": int(params), "macs": int(macs)}


def _m_model_info(claim: Claim, df) -> Outcome:
    m = claim.measure
    res = m.get("resolution", 224)
    call = (
        f"natbench.models.info.count_macs(timm.create_model({m['timm_model']!r}))"
        if "timm_model" in m
        else f"natbench.models.model_info({m['model']!r}, resolution={res})"
    )
    try:
        info = _timm_info(m["timm_model"], res) if "timm_model" in m else _model_info(m["model"], res)
    except ImportError as exc:
        return Outcome(skip=f"natbench.models is not importable here ({exc})")
    except Exception as exc:  # the model code failing is reported, never turned into a number
        return Outcome(skip=f"measurement failed: {call} raised {type(exc).__name__}: {exc}")
    value = info.get(m["field"])
    if value is None:
        return Outcome(skip=f"{call} has no {m['field']!r}")
    value = float(value)
    prov = (
        f"{call}[{m['field']!r}] = {int(value):,} at {res}x{res}, computed by natbench's model code in "
        "this process"
    )
    return Outcome(measurements=[Measurement(m["model"], value, value, value, prov)])


def backbone_shapes(model: str, resolution: int) -> list[list[int]]:
    """[C, H, W] of each stage's feature map of natbench's NatBackbone for `model` at `resolution`.

    Run on the meta device: the model's own forward code propagates shapes without computing values.
    """
    import torch

    from natbench.models import NatBackbone
    from natbench.models.registry import nat_config

    probe = nat_config(model)
    stages = [f"stage{i + 1}" for i in range(len(probe.depths))]
    config = nat_config(model, out_features=stages, attention_backend="reference")
    with torch.device("meta"):
        backbone = NatBackbone(config).eval()
        with torch.no_grad():
            out = backbone(torch.empty(1, 3, resolution, resolution))
    maps = out.feature_maps if hasattr(out, "feature_maps") else out[0]
    return [[int(d) for d in t.shape[1:]] for t in maps]


def _m_backbone_shapes(claim: Claim, df) -> Outcome:
    m = claim.measure
    res = m.get("resolution", 224)
    try:
        shapes = backbone_shapes(m["model"], res)
    except ImportError as exc:
        return Outcome(skip=f"natbench.models is not importable here ({exc})")
    except Exception as exc:
        return Outcome(
            skip=f"measurement failed: NatBackbone({m['model']!r}) at {res}x{res} raised "
            f"{type(exc).__name__}: {exc}"
        )
    prov = (
        f"natbench.models.NatBackbone({m['model']!r}) forward of a 1x3x{res}x{res} input (meta device: "
        f"shapes only) in this process: {shapes}"
    )
    return Outcome(measurements=[Measurement(m["model"], shapes, shapes, shapes, prov)])


def _top1_band(row, value: float) -> tuple[float, float]:
    """95 % band of top-1 measured on a subset of the 50,000 val images (finite-population corrected)."""
    n = row.get("count")
    if _is_missing(n) or int(n) >= IMAGENET_VAL_IMAGES or int(n) <= 0:
        return value, value
    n = int(n)
    p = value / 100
    se = math.sqrt(p * (1 - p) / n * (IMAGENET_VAL_IMAGES - n) / (IMAGENET_VAL_IMAGES - 1)) * 100
    return value - 1.96 * se, value + 1.96 * se


def _m_row(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"))
    if why:
        return Outcome(skip=why)
    name = m["field"]
    out = []
    for _, row in rows.iterrows():
        if _is_missing(row.get(name)):
            continue
        v = float(row[name])
        lo, hi = _top1_band(row, v) if name in ("top1", "top5") else (v, v)
        extra = ("checkpoint", "count") if name in ("top1", "top5") else ("device_name", "dtype", "batch")
        out.append(
            Measurement(
                _describe(row, extra),
                v,
                lo,
                hi,
                f"{name}={v:.4g} from {_describe(row, extra)} in {row.get('source')}",
            )
        )
    if not out:
        return Outcome(skip=f"the selected rows have no {name} values")
    return Outcome(measurements=_aggregate(out, m.get("aggregate", "each")))


def _m_rate(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"))
    if why:
        return Outcome(skip=why)
    out = []
    for _, row in rows.iterrows():
        if _is_missing(row.get("flops")) or _is_missing(row.get("latency_ms")):
            continue
        v, lo, hi = _band(row, "flops_rate")
        label = _describe(row, ("device_name", "dtype", "resolution", "kernel_size"))
        out.append(Measurement(label, v, lo, hi, f"flops / latency = {v:.4g} FLOP/s at {label}"))
    if not out:
        return Outcome(skip="the selected rows have no flops and latency")
    return Outcome(measurements=_aggregate(out, m.get("aggregate", "max")))


def _m_ratio(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"))
    if why:
        return Outcome(skip=why)
    num, why = select(rows, claim, m["numerator"], side="numerator")
    if why:
        return Outcome(skip=why)
    den, why = select(rows, claim, m["denominator"], side="denominator")
    if why:
        return Outcome(skip=why)
    match = list(m.get("match", DEFAULT_MATCH))
    name = m["field"]
    num = num.copy()
    den = den.copy()
    for frame in (num, den):
        for col in match:
            frame[col] = frame[col].map(lambda v: "-" if _is_missing(v) else v)
    num["_i"] = range(len(num))
    den["_j"] = range(len(den))
    pairs = num[[*match, "_i"]].merge(den[[*match, "_j"]], on=match)
    if len(pairs) == 0:
        return Outcome(
            skip=f"no numerator row ({m['numerator']}) and denominator row ({m['denominator']}) "
            f"share {', '.join(match)}" + _preset_hint(claim)
        )
    varying = {c for c in match if pairs[c].nunique() > 1}
    out = []
    for _, pair in pairs.iterrows():
        a = num.iloc[int(pair["_i"])]
        b = den.iloc[int(pair["_j"])]
        try:
            av, alo, ahi = _band(a, name)
            bv, blo, bhi = _band(b, name)
        except (KeyError, TypeError, ValueError):
            continue
        if bv <= 0 or blo <= 0:
            continue
        value = av / bv
        group = _group_label({c: pair[c] for c in match}, varying | {"resolution"})
        label = f"{group}: {_describe(a)} / {_describe(b)}"
        prov = (
            f"{name} {av:.4g} ({_describe(a)}) / {bv:.4g} ({_describe(b)}) = {value:.4g} on "
            f"{a.get('device_name') or a.get('device')} {a.get('dtype')} batch {a.get('batch')}, "
            f"from {a.get('source')}"
        )
        out.append(Measurement(label, value, alo / bhi, ahi / blo, prov))
    if not out:
        return Outcome(skip=f"the matched rows have no usable {name} values")
    return Outcome(measurements=_aggregate(out, m.get("aggregate", "each")))


def _m_scaling(claim: Claim, df) -> Outcome:
    m = claim.measure
    rows, why = select(df, claim, m.get("where"))
    if why:
        return Outcome(skip=why)
    x_name, y_name = m.get("x", "tokens"), m["y"]
    per = list(m.get("per", DEFAULT_PER))
    largest, min_points = m.get("largest", 4), m.get("min_points", 3)
    rows = rows.copy()
    for col in per:
        rows[col] = rows[col].map(lambda v: "-" if _is_missing(v) else v)
    rows = rows[rows[x_name].map(lambda v: not _is_missing(v) and float(v) > 0)]
    rows = rows[rows[y_name].map(lambda v: not _is_missing(v) and float(v) > 0)]
    if len(rows) == 0:
        return Outcome(skip=f"no rows with positive {x_name} and {y_name}" + _preset_hint(claim))
    fittable, notes = [], []
    for key, g in rows.groupby(per, sort=True, dropna=False):
        values = dict(zip(per, key if isinstance(key, tuple) else (key,), strict=True))
        xs = sorted({float(v) for v in g[x_name]})
        if len(xs) < min_points:
            notes.append(f"{_group_label(values, set(per))}: only {len(xs)} distinct {x_name} values")
            continue
        fittable.append((values, g, set(xs[-largest:])))
    # label by the columns that tell the fitted groups apart (plus device/backend/kernel/dtype)
    varying = {c for c in per if len({str(v[c]) for v, _, _ in fittable}) > 1}
    out = []
    for values, g, keep in fittable:
        g = g[g[x_name].map(lambda v, keep=keep: float(v) in keep)]
        fit = fit_power_law(g[x_name].astype(float), g[y_name].astype(float))
        span = f"{int(min(keep)):,}..{int(max(keep)):,}"
        prov = (
            f"log-log fit of {y_name} vs {x_name} over the {len(keep)} largest {x_name} ({span}; "
            f"{fit.points} rows): exponent {fit.exponent:.3f}, 95 % CI [{fit.ci_low:.3f}, {fit.ci_high:.3f}], "
            f"r2 {fit.r2:.3f}"
        )
        out.append(Measurement(_group_label(values, varying), fit.exponent, fit.ci_low, fit.ci_high, prov))
    if not out:
        return Outcome(
            skip=f"no group has the {min_points} distinct {x_name} values a fit needs: "
            + "; ".join(notes)
            + _preset_hint(claim)
        )
    return Outcome(measurements=out, expand=True, notes=notes)


def _m_unmeasurable(claim: Claim, df) -> Outcome:
    return Outcome(skip=claim.measure["reason"])


METHOD_FUNCS = {
    "model_info": _m_model_info,
    "backbone_shapes": _m_backbone_shapes,
    "row": _m_row,
    "ratio": _m_ratio,
    "scaling": _m_scaling,
    "rate": _m_rate,
    "unmeasurable": _m_unmeasurable,
}


def measure(claim: Claim, df) -> Outcome:
    return METHOD_FUNCS[claim.method](claim, df)
