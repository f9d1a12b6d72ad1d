"""A cache for the index and mask tensors the attention backends build once per shape."""

from __future__ import annotations

import functools

import torch


def tensor_cache(maxsize: int = 128):
    """functools.lru_cache that builds its tensors outside inference mode.

    A tensor made under torch.inference_mode() cannot be saved for backward, so a cache first filled
    during an inference run would break every later training step that reuses it.
    """

    def decorate(fn):
        cached = functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def wrapper(*args):
            with torch.inference_mode(False):
                return cached(*args)

        wrapper.cache_clear = cached.cache_clear
        return wrapper

    return decorate
