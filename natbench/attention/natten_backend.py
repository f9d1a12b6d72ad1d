"""NATTEN (>= 0.20) as a backend: exact neighborhood attention without RPB, on whichever kernel natten picks."""

from __future__ import annotations

import warnings

import torch


def _natten():
    import natten  # imported late: `natbench env` must work where natten fails to import

    return natten


def has_libnatten() -> bool:
    """Whether natten's compiled CUDA library is there (natten.HAS_LIBNATTEN); a seam for CPU tests."""
    return bool(getattr(_natten(), "HAS_LIBNATTEN", False))


def why_unavailable(device: torch.device, dtype: torch.dtype) -> str | None:
    try:
        _natten()
    except Exception as exc:  # missing or broken build
        return f"natten is not importable ({type(exc).__name__}: {exc})"
    if device.type == "cuda" and not has_libnatten():
        return "natten was built without its compiled library (libnatten); only its Flex path is available"
    return None


def _choose_backend(q: torch.Tensor, torch_compile: bool) -> str:
    from natten.backends import choose_backend

    return choose_backend(q, q, q, torch_compile=torch_compile)


def natten_kernel(q: torch.Tensor, torch_compile: bool = False, chooser=None) -> str:
    """The natten kernel that na2d picks for tensors like `q` (e.g. hopper-fna, cutlass-fna, flex-fna).

    chooser(q, torch_compile) -> name: natten's backend query by default, a stand-in in CPU tests."""
    return str((chooser or _choose_backend)(q, torch_compile))


def compatible_kernels(q: torch.Tensor) -> list[str]:
    """Every natten kernel that could run tensors like `q` here, as natten lists them."""
    from natten.backends import get_compatible_backends

    return [str(b) for b in get_compatible_backends(q, q, q, torch_compile=False)]


def na2d_natten(q, k, v, kernel_size, dilation, rpb, scale):
    if rpb is not None:  # guarded by the dispatcher too; natten has no RPB since 0.20
        raise ValueError(
            "natten >= 0.20 has no relative positional bias; use backend 'fused', 'tiled', 'flex' or 'reference'"
        )
    kernel = natten_kernel(q)
    with warnings.catch_warnings():
        # natten's CPU path is eager flex by design; `last_kernel()` already reports it.
        warnings.filterwarnings("ignore", message="flex_attention called without torch.compile")
        warnings.filterwarnings("ignore", message="return_lse is deprecated", category=FutureWarning)
        out = _natten().na2d(q, k, v, kernel_size=kernel_size, dilation=dilation, scale=scale, backend=kernel)
    return out, kernel
