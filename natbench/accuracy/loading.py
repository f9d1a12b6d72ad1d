"""Decoding and transforming validation images; an unreadable image is reported, never raised or dropped."""

from __future__ import annotations

import torch
from PIL import Image
from torch.utils.data import Dataset


def _channels(model) -> int:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "num_channels"):
        return int(config.num_channels)
    size = (getattr(model, "pretrained_cfg", None) or {}).get("input_size")
    return int(size[0]) if size else 3


def eval_transform(model, img_size: int | None = None, crop_pct: float | None = None):
    """(transform, timm data config) of `model`: natbench.models' image processor, the papers' recipe
    (short side to size / 0.875, bicubic, center crop, ImageNet mean/std).

    img_size / crop_pct override it (a smaller input keeps CPU checks cheap; the papers' numbers need 224).
    """
    from natbench.models import data_config, image_processor

    if img_size is not None and img_size < 8:
        raise ValueError(f"--img-size must be >= 8 pixels, got {img_size}")
    if crop_pct is not None and not 0 < crop_pct <= 1:
        raise ValueError(f"--crop-pct must be in (0, 1], got {crop_pct}")
    cfg = dict(data_config(img_size or 224, _channels(model)))
    if crop_pct is None:
        transform = image_processor(model, resolution=img_size)
    else:
        from timm.data import create_transform

        cfg["crop_pct"] = float(crop_pct)
        transform = create_transform(**cfg, is_training=False)
    return transform, cfg


class ValidationImages(Dataset):
    """(image tensor or None, label, index, error text) for each (path, label); None when the file cannot be read."""

    def __init__(self, items: list[tuple[str, int]], transform):
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        path, label = self.items[index]
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")  # forces the full decode, so a truncated file fails here
        except Exception as exc:  # any decode failure is the file's fault: report it with the file
            return None, label, index, f"{type(exc).__name__}: {exc}"
        return self.transform(img), label, index, ""


def collate(batch):
    """Stack the readable images; the unreadable ones come back as (index, error) pairs."""
    good = [b for b in batch if b[0] is not None]
    images = torch.stack([b[0] for b in good]) if good else None
    labels = torch.tensor([b[1] for b in good], dtype=torch.long)
    indices = torch.tensor([b[2] for b in good], dtype=torch.long)
    bad = [(b[2], b[3]) for b in batch if b[0] is None]
    return images, labels, indices, bad
