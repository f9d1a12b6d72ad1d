"""natbench's model zoo: NAT / DiNAT (transformers-compatible, on natbench's NA ops) and timm baselines."""

from natbench.models.config import NatConfig
from natbench.models.helpers import data_config, image_processor, logits
from natbench.models.info import model_info
from natbench.models.nat import NatBackbone, NatForImageClassification, NatModel, NatPreTrainedModel
from natbench.models.registry import create_model, dinat_dilations, get_entry, list_models

__all__ = [
    "NatBackbone",
    "NatConfig",
    "NatForImageClassification",
    "NatModel",
    "NatPreTrainedModel",
    "create_model",
    "data_config",
    "dinat_dilations",
    "get_entry",
    "image_processor",
    "list_models",
    "logits",
    "model_info",
]
