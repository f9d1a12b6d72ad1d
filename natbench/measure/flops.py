"""Analytic work of one benchmark call, from the NAT paper's complexity table (attention only, no projections).

Neighborhood and window attention: QK^T and AV each cost tokens * k^2 * head_dim multiply-accumulates per
head, so 2 * tokens * k^2 * head_dim * heads; full attention 2 * tokens^2 * head_dim * heads. A training call
(forward + backward) counts three forwards, the usual convention (backward = two matmuls per forward matmul).
"""

from __future__ import annotations

import math

TRAINING_FACTOR = 3


def padded_side(resolution: int, window: int) -> int:
    """Swin pads the map up to a multiple of the window; window attention works on the padded map."""
    return math.ceil(resolution / window) * window


def op_macs(
    target: str,
    batch: int,
    resolution: int,
    heads: int,
    head_dim: int,
    kernel_size: int | None = None,
    mode: str = "inference",
) -> int:
    """Multiply-accumulates of one call of an attention op on a resolution x resolution map."""
    if target == "na":
        macs = 2 * resolution**2 * kernel_size**2 * head_dim * heads
    elif target == "window":
        macs = 2 * padded_side(resolution, kernel_size) ** 2 * kernel_size**2 * head_dim * heads
    elif target == "full":
        macs = 2 * (resolution**2) ** 2 * head_dim * heads
    else:
        raise ValueError(f"op_macs knows na, window and full, got {target!r}")
    return macs * batch * (TRAINING_FACTOR if mode == "training" else 1)


def model_macs(macs_per_image: int, batch: int, mode: str = "inference") -> int:
    """A model's MACs for one call: model_info's per-image MACs times the batch (times 3 when training)."""
    return int(macs_per_image) * batch * (TRAINING_FACTOR if mode == "training" else 1)
