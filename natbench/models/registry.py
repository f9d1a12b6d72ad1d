"""timm-style model registry: create_model / list_models over NAT, DiNAT and the timm baselines (Swin, ConvNeXt)."""

from __future__ import annotations

import difflib
import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

# DiNAT alternates NA (dilation 1) with dilated NA; the dilation of each stage makes kernel * dilation about the
# stage's map size at 224x224 (56, 28, 14, 7 with kernel 7 -> 8, 4, 2, 1), as in the DiNAT paper's configs.
DINAT_STAGE_DILATIONS = (8, 4, 2, 1)


def dinat_dilations(depths: list[int], per_stage: tuple[int, ...] = DINAT_STAGE_DILATIONS) -> list[list[int]]:
    """[1, d, 1, d, ...] per stage, e.g. DiNAT-Mini: [[1, 8, 1], [1, 4, 1, 4], [1, 2, 1, 2, 1, 2], [1, 1, 1, 1, 1]]."""
    if len(depths) > len(per_stage):
        raise ValueError(
            f"DiNAT dilations are defined for {len(per_stage)} stages, got depths {depths}; "
            "pass dilations=[[...], ...] explicitly"
        )
    return [[1 if i % 2 == 0 else d for i in range(n)] for n, d in zip(depths, per_stage)]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    family: str  # "nat", "dinat", "swin", "convnext"
    paper_params: int | None  # as the paper table prints it (rounded to millions)
    paper_gmacs: float | None
    nat_config: dict[str, Any] = field(default_factory=dict)
    timm_name: str | None = None
    timm_kwargs: dict[str, Any] = field(default_factory=dict)
    builder: str = "hierarchical"  # NAT/DiNAT: "hierarchical" (NatForImageClassification) or "isotropic"


_MINI = dict(embed_dim=64, depths=[3, 4, 6, 5], num_heads=[2, 4, 8, 16], mlp_ratio=3.0, drop_path_rate=0.2)
_TINY = dict(embed_dim=64, depths=[3, 4, 18, 5], num_heads=[2, 4, 8, 16], mlp_ratio=3.0, drop_path_rate=0.2)
_SMALL = dict(
    embed_dim=96,
    depths=[3, 4, 18, 5],
    num_heads=[3, 6, 12, 24],
    mlp_ratio=2.0,
    drop_path_rate=0.3,
    layer_scale_init_value=1e-5,
)
_BASE = dict(
    embed_dim=128,
    depths=[3, 4, 18, 5],
    num_heads=[4, 8, 16, 32],
    mlp_ratio=2.0,
    drop_path_rate=0.5,
    layer_scale_init_value=1e-5,
)
_PAPER = {"mini": (20, 2.7), "tiny": (28, 4.3), "small": (51, 7.8), "base": (90, 13.7)}  # NAT paper Table 3
_DINAT_PAPER = _PAPER  # DiNAT paper Table 3: the same params and GMACs as NAT

_ENTRIES: dict[str, ModelEntry] = {}
for _size, _cfg in (("mini", _MINI), ("tiny", _TINY), ("small", _SMALL), ("base", _BASE)):
    _p, _g = _PAPER[_size]
    _ENTRIES[f"nat_{_size}"] = ModelEntry(f"nat_{_size}", "nat", _p * 10**6, _g, dict(_cfg, kernel_size=7))
    _ENTRIES[f"dinat_{_size}"] = ModelEntry(
        f"dinat_{_size}",
        "dinat",
        _DINAT_PAPER[_size][0] * 10**6,
        _DINAT_PAPER[_size][1],
        dict(_cfg, kernel_size=7, dilations=dinat_dilations(_cfg["depths"])),
    )
# Isotropic NAT and its self-attention twin ViT+ (DiNAT paper Table 5; SHI-Labs classification/isotropic.py):
# 16x16 patches, 12 layers, MLP ratio 4; ViT+ is ViT with a relative positional bias (timm's vit_relpos).
for _size, _dim, _heads, _dpr in (("small", 384, 12, 0.1), ("base", 768, 24, 0.4)):
    _ENTRIES[f"nat_isotropic_{_size}"] = ModelEntry(
        f"nat_isotropic_{_size}",
        "nat",
        None,
        None,
        dict(
            embed_dim=_dim, depths=[12], num_heads=[_heads], mlp_ratio=4.0, drop_path_rate=_dpr, kernel_size=7
        ),
        builder="isotropic",
    )
    _ENTRIES[f"vit_rpb_{_size}"] = ModelEntry(
        f"vit_rpb_{_size}",
        "vit",
        None,
        None,
        timm_name=f"vit_relpos_{_size}_patch16_224",
        timm_kwargs={"num_heads": _heads},
    )
for _size, _swin, _cnx in (
    ("tiny", (28, 4.5), (28, 4.5)),
    ("small", (50, 8.7), (50, 8.7)),
    ("base", (88, 15.4), (89, 15.4)),
):
    _ENTRIES[f"swin_{_size}"] = ModelEntry(
        f"swin_{_size}", "swin", _swin[0] * 10**6, _swin[1], timm_name=f"swin_{_size}_patch4_window7_224"
    )
    _ENTRIES[f"convnext_{_size}"] = ModelEntry(
        f"convnext_{_size}", "convnext", _cnx[0] * 10**6, _cnx[1], timm_name=f"convnext_{_size}"
    )

# NatConfig field -> timm create_model argument
_TIMM_ARGS = {"num_labels": "num_classes", "num_channels": "in_chans"}


def list_models(pattern: str | None = None) -> list[str]:
    """Registered names, optionally filtered by a shell pattern ("nat_*", "*tiny")."""
    names = list(_ENTRIES)
    return [n for n in names if fnmatch.fnmatch(n, pattern)] if pattern else names


def get_entry(name: str) -> ModelEntry:
    if name not in _ENTRIES:
        close = difflib.get_close_matches(str(name), list(_ENTRIES), n=3, cutoff=0.4)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown model {name!r}{hint} Known models: {', '.join(_ENTRIES)}")
    return _ENTRIES[name]


def nat_config(name: str, **overrides: Any):
    """The NatConfig of a registered NAT/DiNAT model with NatConfig-field overrides applied."""
    from natbench.models.config import NatConfig

    entry = get_entry(name)
    if entry.timm_name is not None:
        raise ValueError(f"{name} is a timm model ({entry.timm_name}), it has no NatConfig")
    cfg = dict(entry.nat_config)
    if entry.family == "dinat" and "depths" in overrides and "dilations" not in overrides:
        cfg["dilations"] = dinat_dilations(list(overrides["depths"]))
    elif entry.family == "nat" and "depths" in overrides:
        cfg.pop("dilations", None)
    cfg.update(overrides)
    return NatConfig(**cfg)


def create_model(name: str, pretrained: str | Path | None = None, **overrides: Any) -> nn.Module:
    """A registered model in eval-ready form; `pretrained`: HF directory, hub id (local cache) or checkpoint file.

    NAT/DiNAT overrides are NatConfig fields; for timm models they go to timm.create_model (num_labels and
    num_channels are translated to num_classes and in_chans).
    """
    entry = get_entry(name)
    if entry.timm_name is None:
        return _create_nat(name, pretrained, overrides)
    return _create_timm(entry, pretrained, overrides)


def _create_nat(name: str, pretrained, overrides: dict) -> nn.Module:
    from natbench.models.layers import no_default_init

    with no_default_init():  # init_weights initialises every layer the constructors make
        return _build_nat(name, pretrained, overrides)


def _build_nat(name: str, pretrained, overrides: dict) -> nn.Module:
    from natbench.models import checkpoint as ckpt
    from natbench.models.nat import NatForImageClassification

    if get_entry(name).builder == "isotropic":
        from natbench.models.isotropic import IsotropicNat

        if pretrained is not None:
            raise ValueError(f"{name}: natbench loads no isotropic NAT checkpoints; pass pretrained=None")
        return IsotropicNat(nat_config(name, **overrides))
    if pretrained is None:
        return NatForImageClassification(nat_config(name, **overrides))
    path = ckpt.resolve(pretrained)
    has_config = (path if path.is_dir() else path.parent).joinpath("config.json").is_file()
    if has_config:  # its dilations and labels are authoritative
        return NatForImageClassification.from_pretrained(path, **overrides)
    return NatForImageClassification.from_pretrained(path, config=nat_config(name, **overrides))


def _create_timm(entry: ModelEntry, pretrained, overrides: dict) -> nn.Module:
    import timm

    nat_only = sorted(set(overrides) & {"attention_backend", "drop_rpb", "dilations", "kernel_size"})
    if nat_only:
        raise ValueError(
            f"{nat_only} apply to NAT/DiNAT models only; {entry.name} is timm's {entry.timm_name}"
        )
    kwargs = {**entry.timm_kwargs, **{_TIMM_ARGS.get(k, k): v for k, v in overrides.items()}}
    model = timm.create_model(entry.timm_name, pretrained=False, **kwargs)
    if pretrained is not None:
        from natbench.models import checkpoint as ckpt

        path = ckpt.resolve(pretrained)
        file = ckpt.weights_file(path) if path.is_dir() else path
        ckpt.load_strict(model, ckpt.read_state_dict(file), str(pretrained))
        model.eval()
    return model
