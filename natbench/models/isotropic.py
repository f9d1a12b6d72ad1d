"""Isotropic NAT (DiNAT paper Table 5): a 16x16 patch embedding, then one stage of NA layers on the 14x14 map at
224x224, no downsampling; LayerNorm, average pool, linear head. DiNAT's isotropic configs: NAT-S 384 channels,
NAT-B 768, 12 layers, 12 / 24 heads, MLP ratio 4, kernel 7 (dilation 1; DiNAT-iso alternates dilation 2)."""

from __future__ import annotations

import torch
from torch import nn

from natbench.models.config import NatConfig
from natbench.models.layers import NatLayer, init_weights


class IsotropicNat(nn.Module):
    patch_size = 16

    def __init__(self, config: NatConfig):
        super().__init__()
        self.config = config
        dim = config.embed_dim
        self.patch_embed = nn.Conv2d(config.num_channels, dim, self.patch_size, stride=self.patch_size)
        self.patch_norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        depth = config.depths[0]
        rates = [
            config.drop_path_rate * i / max(depth - 1, 1) for i in range(depth)
        ]  # stochastic depth decay
        dilations = (config.dilations or [[1] * depth])[0]
        self.layers = nn.Sequential(
            *(NatLayer(config, dim, config.num_heads[0], dilations[i], rates[i]) for i in range(depth))
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.head = nn.Linear(dim, config.num_labels)
        init_weights(self, config.initializer_range)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch_norm(self.patch_embed(pixel_values).permute(0, 2, 3, 1))
        x = self.norm(self.layers(x).flatten(1, 2))
        return self.head(x.mean(1))
