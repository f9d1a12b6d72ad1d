"""Attention ops natbench measures: neighborhood (several backends), Swin window, and full attention."""

from natbench.attention import flex as _flex
from natbench.attention import fused as _fused
from natbench.attention import natten_backend as _natten
from natbench.attention import tiled as _tiled
from natbench.attention.functional import (
    AUTO_ORDER,
    Backend,
    backends,
    full_attention_2d,
    last_kernel,
    neighborhood_attention_2d,
    register_backend,
    resolve_backend,
    unavailable_reason,
    window_attention_2d,
)
from natbench.attention.window import rpb_from_timm_table


def _flex_unavailable(device, dtype):
    return None


register_backend(
    Backend(
        "natten",
        _natten.na2d_natten,
        False,
        _natten.why_unavailable,
        "natten.na2d: natten's fused kernels on CUDA, its unfused Flex path elsewhere",
    )
)
register_backend(
    Backend(
        "fused",
        _fused.na2d_fused,
        True,
        _fused.why_unavailable,
        "natbench's C++ kernel: exactly kh*kw keys per query, one query per vector lane; CPU, forward only",
        supports_backward=False,
    )
)
register_backend(
    Backend(
        "tiled",
        _tiled.na2d_tiled,
        True,
        _tiled.why_unavailable,
        "query tiles with a key halo, SDPA on strided views of column strips; exact, linear memory, CPU",
    )
)
register_backend(
    Backend(
        "flex",
        _flex.na2d_flex,
        True,
        _flex_unavailable,
        "torch flex_attention with a neighborhood block mask and RPB score_mod (compiled)",
    )
)

__all__ = [
    "AUTO_ORDER",
    "Backend",
    "backends",
    "full_attention_2d",
    "last_kernel",
    "neighborhood_attention_2d",
    "register_backend",
    "resolve_backend",
    "rpb_from_timm_table",
    "unavailable_reason",
    "window_attention_2d",
]
