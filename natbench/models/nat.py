"""NatModel, NatForImageClassification, NatBackbone: transformers' NAT/DiNAT API on natbench's attention ops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from natbench.models import checkpoint as ckpt
from natbench.models.config import NatConfig
from natbench.models.layers import NatEmbeddings, NatEncoder, init_weights
from natbench.models.outputs import BackboneOutput, NatImageClassifierOutput, NatModelOutput


class NatPreTrainedModel(nn.Module):
    """from_pretrained / save_pretrained in Hugging Face's format; keys as transformers' NAT (DiNAT) writes them."""

    prefix = ""  # where NatModel's keys sit in this class's state dict

    def __init__(self, config: NatConfig):
        super().__init__()
        if not isinstance(config, NatConfig):
            raise TypeError(f"config must be a NatConfig, got {type(config).__name__}")
        self.config = config
        self.loading_info: dict = {}

    def post_init(self) -> None:
        init_weights(self, self.config.initializer_range)

    def set_attention_backend(self, backend: str, drop_rpb: bool | None = None) -> None:
        drop = self.config.drop_rpb if drop_rpb is None else drop_rpb
        NatConfig._check_backend(backend, drop)
        self.config.attention_backend, self.config.drop_rpb = backend, drop

    # -- state dicts in transformers' layout --------------------------------------------------------------
    def _adapt(self, state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], tuple[str, ...]]:
        """Checkpoint keys ("nat."/"dinat." prefixed or not) -> this class's keys; also the keys it may lack."""
        sd = {
            ("nat." + k[len("dinat.") :] if k.startswith("dinat.") else k): v for k, v in state_dict.items()
        }
        prefixed = any(k.startswith("nat.") for k in sd)
        if self.prefix and not prefixed:  # a bare NatModel checkpoint under a classifier
            sd = {(k if k.startswith("classifier.") else self.prefix + k): v for k, v in sd.items()}
        elif not self.prefix and prefixed:  # a classification checkpoint: its trunk, without the head
            sd = {k[len("nat.") :]: v for k, v in sd.items() if k.startswith("nat.")}
        return sd, ()

    @classmethod
    def from_pretrained(
        cls,
        source: str | Path,
        config: NatConfig | None = None,
        ignore_mismatched_sizes: bool = False,
        use_ema: bool = False,
        **overrides: Any,
    ):
        """Load an HF directory, a hub id from the local HF cache, or an original SHI-Labs checkpoint file.

        overrides: NatConfig fields (attention_backend="reference", num_labels=10, ...).
        """
        path = ckpt.resolve(source)
        file = ckpt.weights_file(path) if path.is_dir() else path
        config_json = (path if path.is_dir() else path.parent) / "config.json"
        state_dict = ckpt.read_state_dict(file, use_ema=use_ema)
        if ckpt.is_original(state_dict):
            inferred = ckpt.config_from_original(state_dict)
            state_dict = ckpt.original_to_hf(state_dict)
            if config is None:
                base = NatConfig.from_json_file(config_json).to_dict() if config_json.is_file() else {}
                config = NatConfig.from_dict(base, **{**inferred, **overrides})
        if config is None:
            if not config_json.is_file():
                raise FileNotFoundError(f"{path} has no config.json; an HF-format checkpoint needs one")
            config = NatConfig.from_json_file(config_json, **overrides)
        elif overrides:
            config = NatConfig.from_dict(config.to_dict(), **overrides)
        model = cls(config)
        sd, allow_missing = model._adapt(state_dict)
        model.loading_info = ckpt.load_strict(model, sd, str(source), allow_missing, ignore_mismatched_sizes)
        return model.eval()

    def save_pretrained(self, directory: str | Path) -> Path:
        """config.json + model.safetensors that transformers' NAT (or DiNAT when dilated) can read."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.to_json_file(directory / "config.json", architecture=type(self).__name__)
        family = "dinat." if self.config.is_dilated else "nat."
        tensors = {
            (family + k[len("nat.") :] if k.startswith("nat.") else k): v.detach().contiguous().cpu()
            for k, v in self.state_dict().items()
        }
        save_file(tensors, str(directory / "model.safetensors"), metadata={"format": "pt"})
        return directory


def _flag(value: bool | None, default: bool) -> bool:
    return default if value is None else bool(value)


def _no_attentions(output_attentions: bool | None) -> None:
    if output_attentions:
        raise NotImplementedError(
            "output_attentions is not supported: fused neighborhood attention backends never materialize the "
            "attention weights; call natbench.attention.neighborhood_attention_2d with backend='reference' instead"
        )


class NatModel(NatPreTrainedModel):
    def __init__(self, config: NatConfig, add_pooling_layer: bool = True):
        super().__init__(config)
        self.num_features = config.hidden_size
        self.embeddings = NatEmbeddings(config)
        self.encoder = NatEncoder(config)
        self.layernorm = nn.LayerNorm(self.num_features, eps=config.layer_norm_eps)
        self.add_pooling_layer = add_pooling_layer
        self.post_init()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        _no_attentions(output_attentions)
        want_states = _flag(output_hidden_states, self.config.output_hidden_states)
        x, states = self.encoder(self.embeddings(pixel_values), output_hidden_states=want_states)
        x = self.layernorm(x)
        pooled = x.mean(dim=(1, 2)) if self.add_pooling_layer else None
        if not _flag(return_dict, self.config.use_return_dict):
            return (x, pooled) + ((states,) if states is not None else ())
        reshaped = tuple(s.permute(0, 3, 1, 2) for s in states) if states is not None else None
        return NatModelOutput(
            last_hidden_state=x, pooler_output=pooled, hidden_states=states, reshaped_hidden_states=reshaped
        )


class NatForImageClassification(NatPreTrainedModel):
    prefix = "nat."

    def __init__(self, config: NatConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.nat = NatModel(config)
        self.classifier = (
            nn.Linear(self.nat.num_features, config.num_labels) if config.num_labels else nn.Identity()
        )
        init_weights(self.classifier, config.initializer_range)

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_attentions: bool | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
    ):
        out = self.nat(
            pixel_values,
            output_attentions=output_attentions,
            output_hidden_states=output_hidden_states,
            return_dict=True,
        )
        logits = self.classifier(out.pooler_output)
        loss = None if labels is None else self._loss(logits, labels)
        if not _flag(return_dict, self.config.use_return_dict):
            rest = (logits,) + ((out.hidden_states,) if out.hidden_states is not None else ())
            return ((loss,) + rest) if loss is not None else rest
        return NatImageClassifierOutput(
            loss=loss,
            logits=logits,
            hidden_states=out.hidden_states,
            reshaped_hidden_states=out.reshaped_hidden_states,
        )

    def _loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # transformers' rule: 1 label -> regression; integer labels -> cross entropy; else multi-label BCE.
        problem = self.config.problem_type
        if problem is None:
            if self.num_labels == 1:
                problem = "regression"
            elif labels.dtype in (torch.long, torch.int):
                problem = "single_label_classification"
            else:
                problem = "multi_label_classification"
        labels = labels.to(logits.device)
        if problem == "regression":
            return nn.functional.mse_loss(logits.squeeze(), labels.squeeze().to(logits.dtype))
        if problem == "single_label_classification":
            return nn.functional.cross_entropy(logits.view(-1, self.num_labels), labels.view(-1))
        if problem == "multi_label_classification":
            return nn.functional.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        raise ValueError(
            f"unknown problem_type {problem!r}; use regression, single_label_classification or "
            "multi_label_classification"
        )


class NatBackbone(NatPreTrainedModel):
    """Feature maps [B, C, H, W] of config.out_features (stem, stage1..), each through its own LayerNorm."""

    def __init__(self, config: NatConfig):
        super().__init__(config)
        self.embeddings = NatEmbeddings(config)
        self.encoder = NatEncoder(config)
        self.num_features = [config.embed_dim] + [config.embed_dim * 2**i for i in range(len(config.depths))]
        self.out_features = list(config.out_features)
        self.channels = [self.num_features[i] for i in config.out_indices]
        self.hidden_states_norms = nn.ModuleDict(
            {name: nn.LayerNorm(c) for name, c in zip(self.out_features, self.channels)}
        )
        self.post_init()

    def _adapt(self, state_dict):
        sd = {
            ("nat." + k[len("dinat.") :] if k.startswith("dinat.") else k): v for k, v in state_dict.items()
        }
        if any(
            k.startswith("nat.") for k in sd
        ):  # a classification checkpoint: take its trunk, norms are new
            sd = {
                k[len("nat.") :]: v
                for k, v in sd.items()
                if k.startswith("nat.") and not k.startswith("nat.layernorm.")
            }
            return sd, ("hidden_states_norms.",)
        return sd, ()

    def forward(
        self,
        pixel_values: torch.Tensor,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ):
        _no_attentions(output_attentions)
        _, states = self.encoder(
            self.embeddings(pixel_values), output_hidden_states=True, before_downsampling=True
        )
        maps = tuple(
            self.hidden_states_norms[name](state).permute(0, 3, 1, 2).contiguous()
            for name, state in zip(self.config.stage_names, states)
            if name in self.out_features
        )
        hidden = states if _flag(output_hidden_states, self.config.output_hidden_states) else None
        if not _flag(return_dict, self.config.use_return_dict):
            return (maps,) + ((hidden,) if hidden is not None else ())
        return BackboneOutput(feature_maps=maps, hidden_states=hidden)
