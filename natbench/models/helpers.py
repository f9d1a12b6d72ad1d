"""Small adapters that let callers treat NAT (transformers-style outputs) and timm models alike."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_PCT = 0.875  # both papers' timm validate recipe: resize 256, center crop 224
EVAL_INTERPOLATION = "bicubic"


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The logits tensor of `model(x)`: NAT returns an output object, timm models a tensor."""
    out = model(x)
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"{type(model).__name__} returned {type(out).__name__}, which carries no logits")


def data_config(resolution: int = 224, num_channels: int = 3) -> dict[str, Any]:
    """timm's data config for the papers' evaluation: bicubic, crop_pct 0.875, ImageNet mean/std."""
    from timm.data import resolve_data_config

    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if num_channels != 3:
        mean, std = (sum(mean) / 3,) * num_channels, (sum(std) / 3,) * num_channels
    cfg = {
        "input_size": (num_channels, resolution, resolution),
        "interpolation": EVAL_INTERPOLATION,
        "crop_pct": EVAL_CROP_PCT,
        "crop_mode": "center",
        "mean": mean,
        "std": std,
    }
    return resolve_data_config(args={}, pretrained_cfg=cfg)


def image_processor(name_or_model: str | nn.Module, resolution: int | None = None):
    """The evaluation transform (PIL image -> [C, H, W] tensor) of a registered name or a model instance."""
    from timm.data import create_transform

    channels = 3
    if isinstance(name_or_model, str):
        from natbench.models.registry import get_entry

        get_entry(name_or_model)  # raises a clear error for unknown names
    elif hasattr(name_or_model, "config") and hasattr(name_or_model.config, "num_channels"):
        channels = name_or_model.config.num_channels
    elif isinstance(name_or_model, nn.Module):
        size = getattr(name_or_model, "pretrained_cfg", {}).get("input_size")
        channels = size[0] if size else 3
    else:
        raise TypeError(
            f"image_processor takes a model name or an nn.Module, got {type(name_or_model).__name__}"
        )
    return create_transform(**data_config(resolution or 224, channels), is_training=False)
