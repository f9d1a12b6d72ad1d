"""NATTEN (>= 0.20) as a backend: exact neighborhood attention without RPB, on whichever kernel natten picks."""

from __future__ import annotations

import warnings

import torch


def _natten():
    import natten  # imported late: `natbench env` must work where natten fails to import

    return natten


def why_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    try:
        natten = _natten()
    except Exception as exc:  # missing or broken build
        return f"natten is not importable ({type(exc).__name__}: {exc})"
    if device.type == "cuda" and not natten.HAS_LIBNATTEN:
        return "natten was built without its compiled library (libnatten); only its Flex path is available"
    return None


def natten_kernel(q: torch.Tensor) -> str:
    """The natten kernel that na2d picks for tensors like `q` (e.g. hopper-fna, cutlass-fna, flex-fna)."""
    from natten.backends import choose_backend

    return choose_backend(q, q, q, torch_compile=False)


def na2d_natten(q, k, v, kernel_size, dilation, rpb, scale):
    if rpb is not None:  # guarded by the dispatcher too; natten has no RPB since 0.20
        raise ValueError(
            "natten >= 0.20 has no relative positional bias; use backend 'tiled', 'flex' or 'reference'"
        )
    kernel = natten_kernel(q)
    with warnings.catch_warnings():
        # natten's CPU path is eager flex by design; `last_kernel()` already reports it.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        warnings.filterwarnings("ignore", message="return_lse is deprecated", category=FutureWarning)
        out = _natten().na2d(q, k, v, kernel_size=kernel_size, dilation=dilation, scale=scale, backend=kernel)
    return out, kernel
