"""Finding and reading checkpoints: HF directories, hub ids (offline cache only), original SHI-Labs .pth files."""

from __future__ import annotations

import re
from pathlib import Path

import torch

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WRAPPERS = ("model", "state_dict", "state_dict_ema")


def resolve(source: str | Path) -> Path:
    """A local file or directory for `source`: a path, or a hub id found in the local Hugging Face cache."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    if not _HUB_ID.match(str(source)):
        raise FileNotFoundError(
            f"{source!r} does not exist; pass an HF model directory, a checkpoint file or a hub id"
        )
    from huggingface_hub import constants, snapshot_download

    try:
        return Path(snapshot_download(str(source), local_files_only=True))
    except Exception as exc:  # huggingface_hub raises several error types for "not cached"
        raise FileNotFoundError(
            f"{source!r} is not a local path and is not in the Hugging Face cache {constants.HF_HUB_CACHE} "
            f"(natbench never downloads). Run `huggingface-cli download {source}` on a machine with internet and "
            f"copy that cache here (or set HF_HUB_CACHE), or pass a local directory. ({type(exc).__name__})"
        ) from None


def weights_file(directory: Path) -> Path:
    for name in WEIGHT_FILES:
        if (directory / name).is_file():
            return directory / name
    others = sorted(p for ext in ("*.pth", "*.pt", "*.bin", "*.safetensors") for p in directory.glob(ext))
    if len(others) == 1:
        return others[0]
    raise FileNotFoundError(
        f"no weights in {directory}: expected one of {list(WEIGHT_FILES)} (or a single .pth/.pt file), "
        f"found {[p.name for p in others] or 'none'}"
    )


def read_state_dict(file: Path, use_ema: bool = False) -> dict[str, torch.Tensor]:
    """Tensors of a safetensors file or a torch pickle (weights_only), unwrapped from model/state_dict(_ema)."""
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    obj = torch.load(file, map_location="cpu", weights_only=True)
    if not isinstance(obj, dict):
        raise ValueError(f"{file} holds a {type(obj).__name__}, not a state dict")
    order = ("state_dict_ema", "model", "state_dict") if use_ema else _WRAPPERS
    for key in order:
        if isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(
            f"{file} holds no tensors under the keys {sorted(obj)[:8]}; expected a model state dict"
        )
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module.") :]: v for k, v in tensors.items()}
    return tensors


def is_original(state_dict: dict) -> bool:
    return any(k.startswith(("patch_embed.", "levels.")) for k in state_dict)


def original_to_hf(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """SHI-Labs NAT/DiNAT keys (fused qkv, gamma1/2, ...) -> transformers' NatForImageClassification keys."""
    out: dict[str, torch.Tensor] = {}
    gammas: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        m = re.match(r"levels\.(\d+)\.blocks\.(\d+)\.(.+)$", key)
        if m:
            layer = f"nat.encoder.levels.{m[1]}.layers.{m[2]}."
            rest = m[3]
            if rest in ("gamma1", "gamma2"):
                gammas.setdefault(layer, {})[rest] = value
            elif rest.startswith("attn.qkv."):
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[layer + f"attention.self.{name}.{rest.rsplit('.', 1)[1]}"] = part.clone()
            else:
                out[layer + _LAYER_RENAMES.get(rest, rest)] = value
            continue
        for old, new in _TOP_RENAMES:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            out[key] = value  # left as is: the strict load names it
    for layer, pair in gammas.items():
        if set(pair) != {"gamma1", "gamma2"}:
            raise KeyError(f"{layer} has {sorted(pair)} but layer scale needs both gamma1 and gamma2")
        out[layer + "layer_scale_parameters"] = torch.stack([pair["gamma1"], pair["gamma2"]])
    return out


_LAYER_RENAMES = {
    "norm1.weight": "layernorm_before.weight",
    "norm1.bias": "layernorm_before.bias",
    "norm2.weight": "layernorm_after.weight",
    "norm2.bias": "layernorm_after.bias",
    "attn.rpb": "attention.self.rpb",
    "attn.proj.weight": "attention.output.dense.weight",
    "attn.proj.bias": "attention.output.dense.bias",
    "mlp.fc1.weight": "intermediate.dense.weight",
    "mlp.fc1.bias": "intermediate.dense.bias",
    "mlp.fc2.weight": "output.dense.weight",
    "mlp.fc2.bias": "output.dense.bias",
}
_TOP_RENAMES = (
    ("levels.", "nat.encoder.levels."),  # levels.N.downsample.*; blocks were handled above
    ("patch_embed.proj.", "nat.embeddings.patch_embeddings.projection."),
    ("patch_embed.norm.", "nat.embeddings.norm."),
    ("norm.", "nat.layernorm."),
    ("head.", "classifier."),
)


def config_from_original(state_dict: dict[str, torch.Tensor]) -> dict:
    """The NatConfig fields an original checkpoint's shapes determine (dilations cannot be read from weights)."""
    try:
        conv0 = state_dict["patch_embed.proj.0.weight"]
        embed_dim = state_dict["patch_embed.proj.1.weight"].shape[0]
        depths, heads = [], []
        level = 0
        while f"levels.{level}.blocks.0.attn.rpb" in state_dict:
            n = 0
            while f"levels.{level}.blocks.{n}.attn.rpb" in state_dict:
                n += 1
            depths.append(n)
            heads.append(state_dict[f"levels.{level}.blocks.0.attn.rpb"].shape[0])
            level += 1
        rpb = state_dict["levels.0.blocks.0.attn.rpb"]
        fc1 = state_dict["levels.0.blocks.0.mlp.fc1.weight"]
    except KeyError as exc:
        raise KeyError(f"not a NAT/DiNAT checkpoint: missing {exc.args[0]!r}") from None
    head = state_dict.get("head.weight")
    return {
        "num_channels": conv0.shape[1],
        "embed_dim": embed_dim,
        "depths": depths,
        "num_heads": heads,
        "kernel_size": (rpb.shape[-1] + 1) // 2,
        "mlp_ratio": fc1.shape[0] / fc1.shape[1],
        "qkv_bias": "levels.0.blocks.0.attn.qkv.bias" in state_dict,
        "layer_scale_init_value": 1e-5 if "levels.0.blocks.0.gamma1" in state_dict else 0.0,
        "num_labels": 0 if head is None else head.shape[0],
    }


def load_strict(
    module: torch.nn.Module,
    state_dict: dict[str, torch.Tensor],
    source: str,
    allow_missing: tuple[str, ...] = (),
    ignore_mismatched_sizes: bool = False,
) -> dict:
    """Load or raise one KeyError naming every missing / unexpected / mis-shaped key. Returns what was skipped."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict and not k.startswith(allow_missing)]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if ignore_mismatched_sizes:
        state_dict = {k: v for k, v in state_dict.items() if k not in own or v.shape == own[k].shape}
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected}")
    if mismatched and not ignore_mismatched_sizes:
        problems.append(
            f"shape mismatches ({len(mismatched)}): {mismatched} "
            "(pass ignore_mismatched_sizes=True to re-initialize those, e.g. a new head)"
        )
    if problems:
        raise KeyError(f"checkpoint {source} does not fit {type(module).__name__}: " + "; ".join(problems))
    module.load_state_dict(state_dict, strict=False)
    return {"initialized": [k for k in own if k not in state_dict], "mismatched": mismatched}
