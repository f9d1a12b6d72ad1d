"""What to run: one benchmark case as a validated, normalized, hashable spec (no torch import here)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

OP_TARGETS = ("na", "window", "full")
DTYPES = ("float32", "float16", "bfloat16")
DTYPE_ALIASES = {
    "fp32": "float32",
    "float": "float32",
    "fp16": "float16",
    "half": "float16",
    "bf16": "bfloat16",
}
DTYPE_SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
MODES = ("inference", "training")
DEVICES = ("cpu", "cuda", "auto")
# NA backends a spec may name; whether one runs here is decided when the case runs (unavailable_reason).
NA_BACKENDS = ("auto", "fused", "tiled", "flex", "natten", "reference")
OP_IMPLEMENTATION = "sdpa"  # window and full attention run through torch SDPA
# `package.module:function` names a user-supplied case factory (see natbench.measure.case).
CUSTOM_TARGET = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")

OP_DEFAULTS = {"resolution": 56, "kernel_size": 7, "dilation": 1, "heads": 4, "head_dim": 32}
MODEL_RESOLUTION = 224

HELP = {
    "target": "na | window | full | a natbench.models name | package.module:function",
    "backend": f"NA backend ({', '.join(NA_BACKENDS)}); for NAT/DiNAT models their attention_backend",
    "device": "cpu | cuda | auto (cuda when available)",
    "dtype": "float32 | float16 | bfloat16",
    "mode": "inference (forward, no autograd) | training (forward + backward)",
    "batch": "batch size",
    "resolution": "feature-map side (ops) or image side (models)",
    "kernel_size": "NA kernel / Swin window size (ops); a kernel_size override for NAT/DiNAT models",
    "dilation": "NA dilation",
    "heads": "attention heads (ops)",
    "head_dim": "channels per head (ops)",
    "shifted": "window only: Swin's shifted windows (shift = window // 2)",
    "rpb": "na / window: add a relative positional bias",
    "drop_rpb": "NAT/DiNAT models: run without their RPB (natten's fused kernels have none; changes logits)",
}


@dataclass(frozen=True)
class CaseSpec:
    target: str
    backend: str = "auto"
    device: str = "cpu"
    dtype: str = "float32"
    mode: str = "inference"
    batch: int = 1
    resolution: int | None = None
    kernel_size: int | None = None
    dilation: int | None = None
    heads: int | None = None
    head_dim: int | None = None
    shifted: bool | None = None
    rpb: bool | None = None
    drop_rpb: bool | None = None

    @property
    def kind(self) -> str:
        if self.target in OP_TARGETS:
            return "op"
        return "custom" if CUSTOM_TARGET.match(self.target) else "model"

    @property
    def tokens(self) -> int | None:
        return self.resolution**2 if self.resolution else None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseSpec:
        """Build, validate and normalize a spec; unknown keys or bad values raise one ValueError."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(valid))
        if unknown:
            raise ValueError(f"unknown case field(s) {unknown}; valid fields: {', '.join(valid)}")
        if "target" not in data:
            raise ValueError("a case needs a 'target' (" + HELP["target"] + ")")
        return cls(**{k: coerce(k, v) for k, v in data.items()}).normalized()

    def normalized(self) -> CaseSpec:
        """Fill per-target defaults and clear fields that do not apply, so equal cases get equal ids."""
        self._validate_values()
        spec = self
        if spec.kind == "op":
            filled = {k: v if getattr(spec, k) is None else getattr(spec, k) for k, v in OP_DEFAULTS.items()}
            spec = replace(spec, **filled)
            spec = replace(spec, drop_rpb=None)
            if spec.target == "na":
                spec = replace(spec, shifted=None, rpb=bool(spec.rpb))
            else:
                spec = replace(spec, backend=OP_IMPLEMENTATION, dilation=None)
                if spec.target == "window":
                    spec = replace(spec, shifted=bool(spec.shifted), rpb=bool(spec.rpb))
                else:
                    spec = replace(spec, kernel_size=None, shifted=None, rpb=None)
            if spec.target == "na" and spec.kernel_size % 2 == 0:
                raise ValueError(
                    f"na kernel_size must be odd, got {spec.kernel_size}; use {spec.kernel_size + 1}"
                )
            if spec.target == "na" and spec.backend not in NA_BACKENDS:
                raise ValueError(
                    f"unknown NA backend {spec.backend!r}; choose one of {', '.join(NA_BACKENDS)}"
                )
        elif spec.kind == "model":
            spec = replace(
                spec,
                heads=None,
                head_dim=None,
                dilation=None,
                shifted=None,
                rpb=None,
                resolution=spec.resolution or MODEL_RESOLUTION,
                drop_rpb=True if spec.drop_rpb else None,  # unset and false are one case
            )
        return spec

    def _validate_values(self) -> None:
        if not isinstance(self.target, str) or not self.target:
            raise ValueError("target must be a non-empty string (" + HELP["target"] + ")")
        for name, allowed in (("device", DEVICES), ("dtype", DTYPES), ("mode", MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("batch", "resolution", "kernel_size", "dilation", "heads", "head_dim"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.backend, str) or not self.backend:
            raise ValueError(f"backend must be a non-empty string, got {self.backend!r}")

    def resolved(self, cuda_available: bool) -> CaseSpec:
        """device 'auto' made concrete for this machine."""
        if self.device != "auto":
            return self
        return replace(self, device="cuda" if cuda_available else "cpu")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def case_id(self) -> str:
        """Readable prefix plus a short hash of every normalized parameter: stable across runs and machines."""
        d = self.to_dict()
        if d["drop_rpb"] is None:  # ids of cases without the field stay what they were before it existed
            del d["drop_rpb"]
        params = json.dumps(d, sort_keys=True)
        digest = hashlib.sha1(params.encode()).hexdigest()[:10]
        parts = [self.target.replace(":", ".").replace("_", "-")]
        if self.kind == "op" and self.target == "na":
            parts.append(self.backend)
        if self.resolution:
            parts.append(f"r{self.resolution}")
        if self.kernel_size:
            parts.append(f"k{self.kernel_size}")
        parts += [f"b{self.batch}", DTYPE_SHORT[self.dtype], self.device, self.mode[:5], digest]
        return "-".join(parts)


_INT_FIELDS = {"batch", "resolution", "kernel_size", "dilation", "heads", "head_dim"}
_BOOL_FIELDS = {"shifted", "rpb", "drop_rpb"}


def coerce(name: str, value: Any) -> Any:
    """Typed value of one field from TOML or a command-line string ("56", "true", "fp16")."""
    if value is None:
        return None
    if name in _INT_FIELDS and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if name in _BOOL_FIELDS:
        if isinstance(value, bool):
            return value
        text = str(value).lower()
        if text in ("true", "1", "yes", "on"):
            return True
        if text in ("false", "0", "no", "off"):
            return False
        raise ValueError(f"{name} must be true or false, got {value!r}")
    if name == "dtype" and isinstance(value, str):
        return DTYPE_ALIASES.get(value.lower(), value.lower())
    return value


FIELD_NAMES = tuple(f.name for f in fields(CaseSpec))
