"""`model_info` and `backbone_shapes`: natbench's model code run now. Any exception is natbench's: ERROR."""

from __future__ import annotations

from functools import lru_cache

from natbench.claims.measure.outcome import Measurement, Outcome, error
from natbench.claims.schema import Claim


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
    macs = count_macs(model, torch.empty(1, 3, resolution, resolution, device="meta"))
    return {"params": int(params), "macs": int(macs)}


def measure_model_info(claim: Claim, df) -> Outcome:
    m = claim.measure
    res = m.get("resolution", 224)
    call = (
        f"natbench.models.info.count_macs(timm.create_model({m['timm_model']!r}))"
        if "timm_model" in m
        else f"natbench.models.model_info({m['model']!r}, resolution={res})"
    )
    try:
        info = _timm_info(m["timm_model"], res) if "timm_model" in m else _model_info(m["model"], res)
    except Exception as exc:  # natbench's model code failing is natbench's error, never a skip
        return error(f"{call} raised {type(exc).__name__}: {exc}")
    value = info.get(m["field"])
    if value is None:
        return error(f"{call} has no {m['field']!r}")
    value = float(value)
    prov = f"{call}[{m['field']!r}] = {int(value):,} at {res}x{res}, computed by natbench's model code now"
    return Outcome(
        measurements=[Measurement(m["model"], value, value, value, prov, band_source="exact count")]
    )


def backbone_shapes(model: str, resolution: int) -> list[list[int]]:
    """[C, H, W] of each stage's feature map of NatBackbone(model) (meta device: shapes only)."""
    import torch

    from natbench.models import NatBackbone
    from natbench.models.registry import nat_config

    probe = nat_config(model)
    stages = [f"stage{i + 1}" for i in range(len(probe.depths))]
    config = nat_config(model, out_features=stages, attention_backend="reference")
    with torch.device("meta"):
        backbone = NatBackbone(config).eval()
    with torch.no_grad():  # outside the device context, whose function mode slowed every op ~3x
        out = backbone(torch.empty(1, 3, resolution, resolution, device="meta"))
    maps = out.feature_maps if hasattr(out, "feature_maps") else out[0]
    return [[int(d) for d in t.shape[1:]] for t in maps]


def measure_backbone_shapes(claim: Claim, df) -> Outcome:
    m = claim.measure
    res = m.get("resolution", 224)
    try:
        shapes = backbone_shapes(m["model"], res)
    except Exception as exc:
        return error(f"NatBackbone({m['model']!r}) at {res}x{res} raised {type(exc).__name__}: {exc}")
    prov = (
        f"natbench.models.NatBackbone({m['model']!r}) forward of 1x3x{res}x{res} on the meta device: {shapes}"
    )
    return Outcome(measurements=[Measurement(m["model"], shapes, shapes, shapes, prov, band_source="exact")])
