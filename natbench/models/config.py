"""NatConfig: the fields of Hugging Face's NatConfig (config.json compatible) plus DiNAT dilations and the backend."""

from __future__ import annotations

import copy
import inspect
import json
from pathlib import Path
from typing import Any

ACTIVATIONS = ("gelu", "gelu_new", "gelu_pytorch_tanh", "relu", "selu", "silu", "swish")
# Keys transformers writes that we derive or do not use; dropped on read, rewritten on write where it needs them.
_DERIVED = {
    "hidden_size",
    "num_layers",
    "stage_names",
    "model_type",
    "architectures",
    "transformers_version",
    "_name_or_path",
    "torch_dtype",
    "dtype",
}


def _check_list(name: str, value: Any) -> list[int]:
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(v, int) and v > 0 for v in value)
    ):
        raise ValueError(f"{name} must be a non-empty list of positive ints, got {value!r}")
    return [int(v) for v in value]


class NatConfig:
    """Architecture of a NAT / DiNAT model; the defaults are NAT-Mini's (shi-labs/nat-mini-in1k-224)."""

    model_type = "nat"

    def __init__(
        self,
        patch_size: int = 4,
        num_channels: int = 3,
        embed_dim: int = 64,
        depths: list[int] | None = None,
        num_heads: list[int] | None = None,
        kernel_size: int = 7,
        mlp_ratio: float = 3.0,
        qkv_bias: bool = True,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        drop_path_rate: float = 0.1,
        hidden_act: str = "gelu",
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-5,
        layer_scale_init_value: float = 0.0,
        out_features: list[str] | None = None,
        out_indices: list[int] | None = None,
        num_labels: int | None = None,
        id2label: dict | None = None,
        label2id: dict | None = None,
        dilations: list[list[int]] | None = None,
        attention_backend: str = "auto",
        drop_rpb: bool = False,
        problem_type: str | None = None,
        output_hidden_states: bool = False,
        use_return_dict: bool = True,
        **extra: Any,
    ):
        if patch_size != 4:
            raise ValueError(
                f"patch_size must be 4 (NAT's tokenizer is two stride-2 convolutions), got {patch_size}"
            )
        self.patch_size = patch_size
        self.num_channels = int(num_channels)
        self.embed_dim = int(embed_dim)
        self.depths = _check_list("depths", [3, 4, 6, 5] if depths is None else depths)
        self.num_heads = _check_list("num_heads", [2, 4, 8, 16] if num_heads is None else num_heads)
        if len(self.depths) != len(self.num_heads):
            raise ValueError(
                f"depths and num_heads must have one entry per stage, got {len(self.depths)} depths "
                f"{self.depths} and {len(self.num_heads)} num_heads {self.num_heads}"
            )
        for i, heads in enumerate(self.num_heads):
            dim = self.embed_dim * 2**i
            if dim % heads:
                raise ValueError(f"stage {i + 1} has {dim} channels, not a multiple of num_heads {heads}")
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"kernel_size must be an odd positive int (legacy NA semantics), got {kernel_size!r}"
            )
        self.kernel_size = kernel_size
        self.mlp_ratio = float(mlp_ratio)
        self.qkv_bias = bool(qkv_bias)
        self.hidden_dropout_prob = float(hidden_dropout_prob)
        self.attention_probs_dropout_prob = float(attention_probs_dropout_prob)
        self.drop_path_rate = float(drop_path_rate)
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {ACTIVATIONS}, got {hidden_act!r}")
        self.hidden_act = hidden_act
        self.initializer_range = float(initializer_range)
        self.layer_norm_eps = float(layer_norm_eps)
        self.layer_scale_init_value = float(layer_scale_init_value)
        self.dilations = self._check_dilations(dilations)
        self._check_backend(attention_backend, drop_rpb)
        self.attention_backend = attention_backend
        self.drop_rpb = bool(drop_rpb)
        self.out_features, self.out_indices = self._align_outputs(out_features, out_indices)
        self.id2label, self.label2id = self._labels(num_labels, id2label, label2id)
        self.problem_type = problem_type
        self.output_hidden_states = bool(output_hidden_states)
        self.use_return_dict = bool(use_return_dict)
        self.extra = {k: v for k, v in extra.items() if k not in _DERIVED and k != "return_dict"}
        if "return_dict" in extra:
            self.use_return_dict = bool(extra["return_dict"])

    # -- derived -------------------------------------------------------------------------------------------
    @property
    def num_labels(self) -> int:
        return len(self.id2label)

    @property
    def stage_names(self) -> list[str]:
        return ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]

    @property
    def hidden_size(self) -> int:
        return self.embed_dim * 2 ** (len(self.depths) - 1)

    @property
    def is_dilated(self) -> bool:
        return any(d != 1 for stage in self.dilations for d in stage)

    # -- checks --------------------------------------------------------------------------------------------
    def _check_dilations(self, dilations):
        if dilations is None:
            return [[1] * d for d in self.depths]
        if len(dilations) != len(self.depths):
            raise ValueError(
                f"dilations must have one list per stage ({len(self.depths)}), got {dilations!r}"
            )
        out = []
        for i, (stage, depth) in enumerate(zip(dilations, self.depths)):
            stage = _check_list(f"dilations[{i}]", stage)
            if len(stage) != depth:
                raise ValueError(f"dilations[{i}] must have one entry per layer ({depth}), got {stage}")
            out.append(stage)
        return out

    @staticmethod
    def _check_backend(backend, drop_rpb):
        from natbench.attention import backends

        names = sorted(backends())
        if backend != "auto" and backend not in names:
            raise ValueError(f"unknown attention_backend {backend!r}; choose 'auto' or one of {names}")
        if backend != "auto" and not backends()[backend].supports_rpb and not drop_rpb:
            raise ValueError(
                f"natten >= 0.20 has no RPB, so attention_backend={backend!r} cannot run NAT exactly; "
                "pass drop_rpb=True (changes logits) or use flex/tiled/reference"
            )

    def _align_outputs(self, out_features, out_indices):
        names = self.stage_names
        if out_features is None and out_indices is None:
            return [names[-1]], [len(names) - 1]
        if out_features is not None:
            bad = [f for f in out_features if f not in names]
            if bad:
                raise ValueError(f"out_features {bad} are not stages; choose from {names}")
        if out_indices is not None:
            bad = [i for i in out_indices if not -len(names) <= i < len(names)]
            if bad:
                raise ValueError(f"out_indices {bad} are out of range for stages {names}")
            out_indices = [i % len(names) for i in out_indices]
        if out_features is None:
            out_features = [names[i] for i in out_indices]
        if out_indices is None:
            out_indices = [names.index(f) for f in out_features]
        if [names[i] for i in out_indices] != list(out_features):
            raise ValueError(
                f"out_features {out_features} and out_indices {out_indices} name different stages"
            )
        return list(out_features), list(out_indices)

    @staticmethod
    def _labels(num_labels, id2label, label2id):
        if id2label is not None:
            id2label = {int(k): v for k, v in id2label.items()}
            if num_labels is not None and num_labels != len(id2label):
                raise ValueError(f"num_labels={num_labels} but id2label has {len(id2label)} entries")
        else:
            n = 1000 if num_labels is None else int(num_labels)
            if n < 0:
                raise ValueError(f"num_labels must be >= 0, got {num_labels}")
            id2label = {i: f"LABEL_{i}" for i in range(n)}
        if label2id is None or len(label2id) != len(id2label):
            label2id = {v: k for k, v in id2label.items()}
        return id2label, {k: int(v) for k, v in label2id.items()}

    def check_input_channels(self, channels: int) -> None:
        if channels != self.num_channels:
            raise ValueError(
                f"expected {self.num_channels} channels, got {channels}; "
                f"pass [batch, {self.num_channels}, height, width] pixel values or set num_channels={channels}"
            )

    # -- serialization -------------------------------------------------------------------------------------
    _FIELDS = (
        "patch_size",
        "num_channels",
        "embed_dim",
        "depths",
        "num_heads",
        "kernel_size",
        "mlp_ratio",
        "qkv_bias",
        "hidden_dropout_prob",
        "attention_probs_dropout_prob",
        "drop_path_rate",
        "hidden_act",
        "initializer_range",
        "layer_norm_eps",
        "layer_scale_init_value",
        "out_features",
        "out_indices",
        "dilations",
        "attention_backend",
        "drop_rpb",
        "problem_type",
        "output_hidden_states",
    )

    def to_dict(self, architecture: str = "NatForImageClassification") -> dict[str, Any]:
        """A transformers-readable config dict (model_type "nat", or "dinat" when any dilation is > 1)."""
        family = "dinat" if self.is_dilated else "nat"
        out = {
            "architectures": [architecture.replace("Nat", "Dinat") if family == "dinat" else architecture],
            "model_type": family,
        }
        out.update(copy.deepcopy(self.extra))
        out.update({k: copy.deepcopy(getattr(self, k)) for k in self._FIELDS})
        out["return_dict"] = self.use_return_dict
        out["num_labels"] = self.num_labels
        out["id2label"] = {str(k): v for k, v in self.id2label.items()}
        out["label2id"] = dict(self.label2id)
        out["hidden_size"] = self.hidden_size
        out["num_layers"] = len(self.depths)
        out["stage_names"] = self.stage_names
        return out

    @classmethod
    def from_dict(cls, config: dict[str, Any], **overrides: Any) -> NatConfig:
        data = {k: v for k, v in config.items() if k not in _DERIVED}
        valid = set(inspect.signature(cls.__init__).parameters) - {"self", "extra"}
        unknown_overrides = [k for k in overrides if k not in valid]
        if unknown_overrides:
            raise ValueError(
                f"unknown NatConfig field(s) {unknown_overrides}; valid fields: {sorted(cls._FIELDS)}"
                " + num_labels, id2label, label2id"
            )
        n_labels = overrides.get("num_labels")
        if (
            n_labels is not None
            and "id2label" not in overrides
            and len(data.get("id2label") or ()) != n_labels
        ):
            data.pop("id2label", None)
            data.pop("label2id", None)
        if "depths" in overrides and "dilations" not in overrides:
            data.pop("dilations", None)
        if any(k in overrides for k in ("out_features", "out_indices")):
            data.pop("out_features", None)
            data.pop("out_indices", None)
        data.update(overrides)
        return cls(**data)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | Path, architecture: str = "NatForImageClassification") -> None:
        Path(path).write_text(json.dumps(self.to_dict(architecture), indent=2, sort_keys=True) + "\n")

    @classmethod
    def from_json_file(cls, path: str | Path, **overrides: Any) -> NatConfig:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no config file at {path}")
        return cls.from_dict(json.loads(path.read_text()), **overrides)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NatConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._FIELDS[:8])
        return f"NatConfig({fields}, num_labels={self.num_labels}, ...)"
