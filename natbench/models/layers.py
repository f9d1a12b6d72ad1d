"""NAT building blocks. Attribute names follow transformers' NAT so state-dict keys match it exactly."""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from timm.layers import DropPath
from torch import nn

from natbench.attention import neighborhood_attention_2d
from natbench.models.config import NatConfig


def activation(name: str) -> nn.Module:
    return {
        "gelu": nn.GELU(),
        "gelu_new": nn.GELU(approximate="tanh"),
        "gelu_pytorch_tanh": nn.GELU(approximate="tanh"),
        "relu": nn.ReLU(),
        "selu": nn.SELU(),
        "silu": nn.SiLU(),
        "swish": nn.SiLU(),
    }[name]


class NatPatchEmbeddings(nn.Module):
    """Two 3x3 stride-2 convolutions: [B, C_in, H, W] -> [B, H/4, W/4, C] (ceil for odd sizes)."""

    def __init__(self, config: NatConfig):
        super().__init__()
        self.config = config
        c = config.embed_dim
        self.projection = nn.Sequential(
            nn.Conv2d(config.num_channels, c // 2, kernel_size=3, stride=2, padding=1),
            nn.Conv2d(c // 2, c, kernel_size=3, stride=2, padding=1),
        )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.dim() != 4:
            raise ValueError(
                f"pixel_values must be [batch, channels, height, width], got {tuple(pixel_values.shape)}"
            )
        self.config.check_input_channels(pixel_values.shape[1])
        # Channels-last convolutions: their [B, H, W, C] output is then contiguous, with no copy after.
        x = self.projection(pixel_values.contiguous(memory_format=torch.channels_last))
        return x.permute(0, 2, 3, 1)


class NatEmbeddings(nn.Module):
    def __init__(self, config: NatConfig):
        super().__init__()
        self.patch_embeddings = NatPatchEmbeddings(config)
        self.norm = nn.LayerNorm(config.embed_dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.norm(self.patch_embeddings(pixel_values)))


class NatDownsampler(nn.Module):
    """3x3 stride-2 convolution without bias (C -> 2C), then LayerNorm; channels-last in and out."""

    def __init__(self, dim: int):
        super().__init__()
        self.reduction = nn.Conv2d(dim, 2 * dim, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = nn.LayerNorm(2 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.reduction(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1))


class NeighborhoodAttention(nn.Module):
    def __init__(self, config: NatConfig, dim: int, num_heads: int, dilation: int):
        super().__init__()
        self.config = config
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.kernel_size = config.kernel_size
        self.dilation = dilation
        k = config.kernel_size
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * k - 1, 2 * k - 1))
        self.query = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.key = nn.Linear(dim, dim, bias=config.qkv_bias)
        self.value = nn.Linear(dim, dim, bias=config.qkv_bias)
        self._qkv_cache = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.config.attention_probs_dropout_prob > 0:
            raise NotImplementedError(
                "attention_probs_dropout_prob > 0 needs the attention weights, which fused NA backends never "
                "materialize; train with attention_probs_dropout_prob=0.0"
            )
        b, h, w, c = x.shape
        # One GEMM for q, k and v (the three Linears keep transformers' state-dict keys); the kernels read
        # q, k, v as strided views of its [B, H, W, 3, heads, D] output, without copies.
        q, k, v = F.linear(x, *self._qkv_params()).view(b, h, w, 3, self.num_heads, self.head_dim).unbind(3)
        rpb = None if self.config.drop_rpb else self.rpb
        out = neighborhood_attention_2d(
            q, k, v, self.kernel_size, self.dilation, rpb=rpb, backend=self.config.attention_backend
        )
        return out.reshape(b, h, w, c)

    def _qkv_params(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The [3C, C] weight (and bias) of the fused GEMM; kept between calls while nothing needs gradients."""
        params = [p for m in (self.query, self.key, self.value) for p in (m.weight, m.bias) if p is not None]
        cache = not torch.is_grad_enabled()
        key = tuple((p.data_ptr(), p._version, p.dtype, p.device) for p in params) if cache else None
        if key is not None and self._qkv_cache is not None and self._qkv_cache[0] == key:
            return self._qkv_cache[1]
        projs = (self.query, self.key, self.value)
        weight = torch.cat([p.weight for p in projs])
        bias = torch.cat([p.bias for p in projs]) if self.query.bias is not None else None
        self._qkv_cache = (key, (weight, bias)) if key is not None else None
        return weight, bias

    def _apply(self, fn, *args, **kwargs):
        self._qkv_cache = None  # .to() / .half() may reuse storage addresses
        return super()._apply(fn, *args, **kwargs)


class NeighborhoodAttentionOutput(nn.Module):
    def __init__(self, config: NatConfig, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(x))


class NeighborhoodAttentionModule(nn.Module):
    def __init__(self, config: NatConfig, dim: int, num_heads: int, dilation: int):
        super().__init__()
        self.self = NeighborhoodAttention(config, dim, num_heads, dilation)
        self.output = NeighborhoodAttentionOutput(config, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x))


class NatIntermediate(nn.Module):
    def __init__(self, config: NatConfig, dim: int):
        super().__init__()
        self.dense = nn.Linear(dim, int(config.mlp_ratio * dim))
        self.act = activation(config.hidden_act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class NatOutput(nn.Module):
    def __init__(self, config: NatConfig, dim: int):
        super().__init__()
        self.dense = nn.Linear(int(config.mlp_ratio * dim), dim)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.dense(x))


class NatLayer(nn.Module):
    def __init__(self, config: NatConfig, dim: int, num_heads: int, dilation: int, drop_path: float):
        super().__init__()
        self.window = config.kernel_size * dilation
        self.layernorm_before = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.attention = NeighborhoodAttentionModule(config, dim, num_heads, dilation)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.layernorm_after = nn.LayerNorm(dim, eps=config.layer_norm_eps)
        self.intermediate = NatIntermediate(config, dim)
        self.output = NatOutput(config, dim)
        scale = config.layer_scale_init_value
        self.layer_scale_parameters = nn.Parameter(scale * torch.ones(2, dim)) if scale > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, height, width, _ = x.shape
        y = self.layernorm_before(x)
        # Maps smaller than kernel * dilation are zero-padded right/bottom (after the norm) and cropped back.
        pad_h, pad_w = max(0, self.window - height), max(0, self.window - width)
        if pad_h or pad_w:
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        y = self.attention(y)
        if pad_h or pad_w:
            y = y[:, :height, :width].contiguous()
        if self.layer_scale_parameters is not None:
            y = self.layer_scale_parameters[0] * y
        x = x + self.drop_path(y)
        y = self.output(self.intermediate(self.layernorm_after(x)))
        if self.layer_scale_parameters is not None:
            y = self.layer_scale_parameters[1] * y
        return x + self.drop_path(y)


class NatStage(nn.Module):
    def __init__(self, config: NatConfig, index: int, drop_paths: list[float]):
        super().__init__()
        dim = config.embed_dim * 2**index
        self.layers = nn.ModuleList(
            NatLayer(config, dim, config.num_heads[index], dilation, dp)
            for dilation, dp in zip(config.dilations[index], drop_paths)
        )
        self.downsample = NatDownsampler(dim) if index < len(config.depths) - 1 else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(output after the downsampler, output before it)."""
        for layer in self.layers:
            x = layer(x)
        return (x if self.downsample is None else self.downsample(x)), x


class NatEncoder(nn.Module):
    def __init__(self, config: NatConfig):
        super().__init__()
        rates = torch.linspace(0, config.drop_path_rate, sum(config.depths), device="cpu").tolist()
        bounds = [sum(config.depths[:i]) for i in range(len(config.depths) + 1)]
        self.levels = nn.ModuleList(
            NatStage(config, i, rates[bounds[i] : bounds[i + 1]]) for i in range(len(config.depths))
        )

    def forward(self, x: torch.Tensor, output_hidden_states: bool = False, before_downsampling: bool = False):
        """Last hidden state and, if asked, the hidden states [B, H, W, C]: embeddings then one per stage."""
        states = [x] if output_hidden_states else None
        for level in self.levels:
            x, before = level(x)
            if states is not None:
                states.append(before if before_downsampling else x)
        return x, (tuple(states) if states is not None else None)


_SELF_INITIALISED = (nn.Linear, nn.Conv2d, nn.LayerNorm)


@contextlib.contextmanager
def no_default_init():
    """Build without Linear / Conv2d / LayerNorm's own init, which init_weights then redoes for every one of
    them (transformers' no_init_weights skips it likewise): their kaiming init was half of building a NAT (0.38
    of 0.76 s for NAT-M, NAT-T, DiNAT-M and isotropic NAT-S), and a sweep builds ~65. Not thread-safe: it
    patches the classes, and puts back exactly what each defined itself (Conv2d inherits its init)."""
    own = {cls: cls.__dict__.get("reset_parameters") for cls in _SELF_INITIALISED}
    for cls in own:
        cls.reset_parameters = _no_init
    try:
        yield
    finally:
        for cls, fn in own.items():
            if fn is None:
                del cls.reset_parameters
            else:
                cls.reset_parameters = fn


def _no_init(self) -> None:
    return None


def init_weights(module: nn.Module, std: float) -> None:
    """transformers' NAT init (normal linear/conv weights, zero biases, unit norms); RPB as NATTEN initialised it."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, NeighborhoodAttention):
            nn.init.trunc_normal_(m.rpb, std=0.02, a=-2.0, b=2.0)
