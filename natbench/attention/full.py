"""Global self attention over every token of the map, through SDPA."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    b, h, w, heads, d = q.shape
    qf, kf, vf = (t.reshape(b, h * w, heads, d).transpose(1, 2) for t in (q, k, v))
    out = F.scaled_dot_product_attention(qf, kf, vf, scale=scale)
    return out.transpose(1, 2).reshape(b, h, w, heads, d)
