"""Numerical parity with transformers' NAT / DiNAT (4.57.6) for the same weights.

transformers calls the legacy natten ops natten2dqkrpb / natten2dav, which natten >= 0.20 removed. The test
supplies both, written here from the legacy semantics (windows shifted inward at borders, RPB indexed by
(key - query) / dilation + k - 1) with the geometry helpers of natbench's reference backend.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from natbench.attention.neighborhood import neighbor_index, rpb_index
from natbench.models import NatBackbone, NatConfig, NatForImageClassification

pytest.importorskip("transformers")
ATOL = 1e-4


def _gather(t: torch.Tensor, kernel: int, dilation: int) -> torch.Tensor:
    """t [B, heads, H, W, D] -> neighbours [B, heads, H, W, k, k, D]."""
    _, _, height, width, _ = t.shape
    rows = neighbor_index(height, kernel, dilation)[:, None, :, None]
    cols = neighbor_index(width, kernel, dilation)[None, :, None, :]
    return t[:, :, rows, cols]


def legacy_qkrpb(query, key, rpb, kernel_size, dilation):
    _, _, height, width, _ = query.shape
    scores = torch.einsum("bnyxd,bnyxijd->bnyxij", query, _gather(key, kernel_size, dilation))
    if rpb is not None:
        ry = rpb_index(height, kernel_size, dilation)[:, None, :, None]
        rx = rpb_index(width, kernel_size, dilation)[None, :, None, :]
        scores = scores + rpb[:, ry, rx][None]
    return scores.flatten(-2)


def legacy_av(probs, value, kernel_size, dilation):
    probs = probs.unflatten(-1, (kernel_size, kernel_size))
    return torch.einsum("bnyxij,bnyxijd->bnyxd", probs, _gather(value, kernel_size, dilation))


def _dinat_attention_forward(self, hidden_states, output_attentions=False):
    """transformers 4.57.6's DiNAT attention unpacks [B, H*W, C] from the [B, H, W, C] map its layer passes
    (ValueError), so DinatModel cannot run at all; this is its NAT sibling's forward with the layer's dilation."""
    b, h, w, _ = hidden_states.shape

    def heads(t):
        return t.view(b, h, w, self.num_attention_heads, self.attention_head_size).permute(0, 3, 1, 2, 4)

    query = heads(self.query(hidden_states)) / self.attention_head_size**0.5
    scores = legacy_qkrpb(query, heads(self.key(hidden_states)), self.rpb, self.kernel_size, self.dilation)
    context = legacy_av(scores.softmax(-1), heads(self.value(hidden_states)), self.kernel_size, self.dilation)
    return (context.permute(0, 2, 3, 1, 4).reshape(b, h, w, -1),)


@pytest.fixture(scope="module")
def hf():
    """transformers' nat and dinat modules with the legacy ops patched in."""
    import natten.functional

    mp = pytest.MonkeyPatch()
    mp.setattr(natten.functional, "natten2dqkrpb", legacy_qkrpb, raising=False)
    mp.setattr(natten.functional, "natten2dav", legacy_av, raising=False)
    nat = importlib.import_module("transformers.models.deprecated.nat.modeling_nat")
    dinat = importlib.import_module("transformers.models.dinat.modeling_dinat")
    for module in (nat, dinat):
        mp.setattr(module, "natten2dqkrpb", legacy_qkrpb)
        mp.setattr(module, "natten2dav", legacy_av)
    mp.setattr(dinat.NeighborhoodAttention, "forward", _dinat_attention_forward)
    yield nat, dinat
    mp.undo()


SMALL = dict(
    embed_dim=32,
    depths=[1, 2, 2, 1],
    num_heads=[2, 4, 4, 8],
    drop_path_rate=0.0,
    attention_backend="reference",
)


def _ours(layer_scale: float = 0.0, **kw) -> NatForImageClassification:
    torch.manual_seed(0)
    model = NatForImageClassification(
        NatConfig(**{**SMALL, "layer_scale_init_value": layer_scale, **kw})
    ).eval()
    with torch.no_grad():  # make every parameter matter: random norms, biases and layer scales
        for name, p in model.named_parameters():
            if ("norm" in name and name.endswith("weight")) or "layer_scale" in name:
                p.uniform_(0.5, 1.5)
            elif name.endswith("bias"):
                p.normal_(0, 0.1)
    return model


def _hf_config(module, ours: NatConfig, **extra):
    cfg_cls = module.NatConfig if hasattr(module, "NatConfig") else None
    if cfg_cls is None:
        from transformers import DinatConfig as cfg_cls
    kw = dict(
        embed_dim=ours.embed_dim,
        depths=ours.depths,
        num_heads=ours.num_heads,
        kernel_size=ours.kernel_size,
        mlp_ratio=ours.mlp_ratio,
        drop_path_rate=0.0,
        layer_scale_init_value=ours.layer_scale_init_value,
        num_labels=ours.num_labels,
        **extra,
    )
    if ours.is_dilated:
        kw["dilations"] = ours.dilations
    return cfg_cls(**kw)


def _hf_classifier(hf, ours: NatForImageClassification):
    nat, dinat = hf
    if ours.config.is_dilated:
        model = dinat.DinatForImageClassification(_hf_config(dinat, ours.config)).eval()
        state = {("dinat." + k[4:] if k.startswith("nat.") else k): v for k, v in ours.state_dict().items()}
    else:
        model = nat.NatForImageClassification(_hf_config(nat, ours.config)).eval()
        state = ours.state_dict()
    model.load_state_dict(state, strict=True)  # identical key sets, or this raises
    return model


def _assert_same(ours_out, theirs_out):
    torch.testing.assert_close(ours_out.logits, theirs_out.logits, atol=ATOL, rtol=0)
    assert len(ours_out.hidden_states) == len(theirs_out.hidden_states)
    for a, b in zip(ours_out.hidden_states, theirs_out.hidden_states):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)
    for a, b in zip(ours_out.reshaped_hidden_states, theirs_out.reshaped_hidden_states):
        torch.testing.assert_close(a, b, atol=ATOL, rtol=0)


# 224: standard; 200x152: non-divisible and non-square, last stage 7x5 < kernel; 48x40: stages 2-4 padded.
@pytest.mark.parametrize("size", [(224, 224), (200, 152), (48, 40)])
def test_nat_matches_transformers(hf, size):
    ours = _ours(layer_scale=1e-5)
    theirs = _hf_classifier(hf, ours)
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        a = ours(x, output_hidden_states=True)
        b = theirs(x, output_hidden_states=True)
    _assert_same(a, b)
    assert a.hidden_states[-1].shape[1:3] == ((size[0] + 31) // 32, (size[1] + 31) // 32)


@pytest.mark.parametrize("size", [(224, 224), (72, 104)])
def test_dinat_matches_transformers(hf, size):
    from natbench.models import dinat_dilations

    ours = _ours(dilations=dinat_dilations(SMALL["depths"]))
    assert ours.config.dilations == [[1], [1, 4], [1, 2], [1]]
    theirs = _hf_classifier(hf, ours)
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        _assert_same(ours(x, output_hidden_states=True), theirs(x, output_hidden_states=True))


def test_backbone_matches_transformers(hf):
    nat, _ = hf
    stages = ["stem", "stage1", "stage2", "stage3", "stage4"]
    ours_cls = _ours()
    ours = NatBackbone(NatConfig(**{**SMALL, "out_features": stages})).eval()
    missing = ours.load_state_dict(
        {k[4:]: v for k, v in ours_cls.state_dict().items() if k.startswith("nat.")}, strict=False
    ).missing_keys
    assert missing and all(k.startswith("hidden_states_norms.") for k in missing)
    theirs = nat.NatBackbone(_hf_config(nat, ours.config, out_features=stages)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        a, b = ours(x, output_hidden_states=True), theirs(x, output_hidden_states=True)
    assert [f.shape[1] for f in a.feature_maps] == [32, 32, 64, 128, 256]
    for fa, fb in zip(a.feature_maps, b.feature_maps):
        torch.testing.assert_close(fa, fb, atol=ATOL, rtol=0)
    for ha, hb in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(ha, hb, atol=ATOL, rtol=0)


def to_original(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """transformers' keys -> SHI-Labs keys (the inverse of what natbench converts), written independently."""
    out = {}
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state_dict.items():
        if key.startswith("nat.encoder.levels.") and ".layers." in key:
            level, rest = key[len("nat.encoder.levels.") :].split(".layers.", 1)
            layer, name = rest.split(".", 1)
            prefix = f"levels.{level}.blocks.{layer}."
            if name.startswith("attention.self.") and name.split(".")[2] in ("query", "key", "value"):
                layers.setdefault(prefix, {})[name[len("attention.self.") :]] = value
                continue
            if name == "layer_scale_parameters":
                out[prefix + "gamma1"], out[prefix + "gamma2"] = value[0], value[1]
                continue
            name = (
                name.replace("layernorm_before", "norm1")
                .replace("layernorm_after", "norm2")
                .replace("attention.self.rpb", "attn.rpb")
                .replace("attention.output.dense", "attn.proj")
                .replace("intermediate.dense", "mlp.fc1")
                .replace("output.dense", "mlp.fc2")
            )
            out[prefix + name] = value
        elif key.startswith("nat.encoder.levels."):
            out["levels." + key[len("nat.encoder.levels.") :]] = (
                value  # downsample.reduction / downsample.norm
            )
        elif key.startswith("nat.embeddings.patch_embeddings.projection."):
            out["patch_embed.proj." + key.rsplit("projection.", 1)[1]] = value
        elif key.startswith("nat.embeddings.norm."):
            out["patch_embed.norm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("nat.layernorm."):
            out["norm." + key.rsplit(".", 1)[1]] = value
        elif key.startswith("classifier."):
            out["head." + key.rsplit(".", 1)[1]] = value
        else:
            raise AssertionError(f"unmapped key {key}")
    for prefix, parts in layers.items():
        for kind in ("weight", "bias"):
            out[prefix + f"attn.qkv.{kind}"] = torch.cat(
                [parts[f"{n}.{kind}"] for n in ("query", "key", "value")]
            )
    return out


@pytest.mark.parametrize("wrapper", [None, "model", "state_dict_ema"])
def test_original_checkpoint_matches_transformers(hf, tmp_path, wrapper):
    ours = _ours(layer_scale=1e-5)
    theirs = _hf_classifier(hf, ours)
    original = to_original(theirs.state_dict())
    assert "levels.0.blocks.0.attn.qkv.weight" in original and "levels.0.blocks.0.gamma1" in original
    file = tmp_path / "nat_small_test.pth"
    torch.save(original if wrapper is None else {wrapper: original, "epoch": 3}, file)
    loaded = NatForImageClassification.from_pretrained(file, attention_backend="reference")
    assert loaded.config.depths == SMALL["depths"] and loaded.config.embed_dim == 32
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        _assert_same(loaded(x, output_hidden_states=True), theirs(x, output_hidden_states=True))


def test_transformers_reads_save_pretrained(hf, tmp_path):
    nat, _ = hf
    ours = _ours(layer_scale=1e-5, num_labels=7)
    ours.save_pretrained(tmp_path)
    theirs, info = nat.NatForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert theirs.config.num_labels == 7 and theirs.config.depths == SMALL["depths"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x).logits, theirs.eval()(x).logits, atol=ATOL, rtol=0)


def test_dinat_save_pretrained_reads_as_transformers_dinat(hf, tmp_path):
    from transformers import AutoConfig

    from natbench.models import dinat_dilations

    _, dinat = hf
    ours = _ours(dilations=dinat_dilations(SMALL["depths"]))
    ours.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "dinat"
    theirs, info = dinat.DinatForImageClassification.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    assert theirs.config.dilations == ours.config.dilations
    mine = ours.state_dict()
    for key, value in theirs.state_dict().items():
        torch.testing.assert_close(
            value, mine["nat." + key[len("dinat.") :] if key.startswith("dinat.") else key]
        )
    again = NatForImageClassification.from_pretrained(tmp_path, attention_backend="reference")
    assert again.config.dilations == ours.config.dilations
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x).logits, ours(x).logits, atol=0, rtol=0)
