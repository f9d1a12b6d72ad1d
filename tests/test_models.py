"""natbench.models: config, checkpoints, registry, backends, MACs, CLI."""

from __future__ import annotations

import json

import pytest
import torch

from natbench.attention import backends
from natbench.models import (
    NatBackbone,
    NatConfig,
    NatForImageClassification,
    NatModel,
    create_model,
    image_processor,
    list_models,
    logits,
    model_info,
)
from natbench.models import checkpoint as ckpt

TINY = dict(
    embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], num_labels=5, attention_backend="reference"
)


def tiny_model(**kw) -> NatForImageClassification:
    torch.manual_seed(0)
    return NatForImageClassification(NatConfig(**{**TINY, **kw})).eval()


# -- config ------------------------------------------------------------------------------------------------
def test_config_defaults_are_the_model_pages():
    c = NatConfig()
    assert (c.patch_size, c.num_channels, c.embed_dim, c.depths, c.num_heads, c.kernel_size, c.mlp_ratio) == (
        4,
        3,
        64,
        [3, 4, 6, 5],
        [2, 4, 8, 16],
        7,
        3.0,
    )
    assert (c.qkv_bias, c.drop_path_rate, c.hidden_act, c.initializer_range, c.layer_norm_eps) == (
        True,
        0.1,
        "gelu",
        0.02,
        1e-5,
    )
    assert c.layer_scale_init_value == 0.0 and c.num_labels == 1000 and c.out_features == ["stage4"]
    assert (
        c.dilations == [[1] * 3, [1] * 4, [1] * 6, [1] * 5]
        and c.attention_backend == "auto"
        and not c.drop_rpb
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(patch_size=2), "patch_size must be 4"),
        (dict(depths=[2, 2], num_heads=[2, 4, 8]), "one entry per stage"),
        (dict(kernel_size=6), "odd"),
        (dict(attention_backend="cuda-magic"), "unknown attention_backend"),
        (dict(attention_backend="natten"), "natten >= 0.20 has no RPB"),
        (dict(dilations=[[1, 2]] * 4), "one entry per layer"),
        (dict(out_features=["stage9"]), "not stages"),
    ],
)
def test_bad_configs_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        NatConfig(**kwargs)


def test_channel_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match="expected 3 channels, got 1"):
        tiny_model()(torch.randn(1, 1, 32, 32))


def test_config_json_round_trip_and_transformers_reads_it(tmp_path):
    from transformers.models.deprecated.nat.configuration_nat import NatConfig as HFNatConfig

    c = NatConfig(
        embed_dim=32,
        depths=[2, 2, 2, 2],
        num_labels=3,
        layer_scale_init_value=1e-5,
        out_features=["stage2", "stage4"],
        attention_backend="reference",
    )
    c.to_json_file(tmp_path / "config.json")
    assert NatConfig.from_json_file(tmp_path / "config.json") == c
    hf = HFNatConfig.from_pretrained(tmp_path)
    assert (hf.embed_dim, hf.depths, hf.num_labels, hf.layer_scale_init_value) == (32, [2, 2, 2, 2], 3, 1e-5)
    assert hf.out_features == ["stage2", "stage4"] and hf.out_indices == [2, 4]
    HFNatConfig(embed_dim=48, num_heads=[3, 6, 12, 24], id2label={0: "cat", 1: "dog"}).save_pretrained(
        tmp_path / "hf"
    )
    ours = NatConfig.from_json_file(tmp_path / "hf" / "config.json")
    assert ours.embed_dim == 48 and ours.num_heads == [3, 6, 12, 24] and ours.id2label == {0: "cat", 1: "dog"}


# -- forward / outputs -------------------------------------------------------------------------------------
def test_outputs_follow_transformers_conventions():
    model = tiny_model()
    x = torch.randn(2, 3, 70, 90)
    with torch.no_grad():
        out = model(x, output_hidden_states=True, labels=torch.tensor([1, 4]))
        tup = model(x, output_hidden_states=True, return_dict=False)
        base = NatModel(model.config).eval()
        base.load_state_dict({k[4:]: v for k, v in model.state_dict().items() if k.startswith("nat.")})
        b = base(x)
    expected_loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 4]))
    torch.testing.assert_close(out.loss, expected_loss)
    assert out.logits.shape == (2, 5) and len(out.hidden_states) == 5
    assert [h.shape[1:3] for h in out.hidden_states] == [(18, 23), (9, 12), (5, 6), (3, 3), (3, 3)]
    for h, r in zip(out.hidden_states, out.reshaped_hidden_states):
        assert torch.equal(h.permute(0, 3, 1, 2), r)
    assert torch.equal(tup[0], out.logits) and len(tup[1]) == 5
    torch.testing.assert_close(b.pooler_output, b.last_hidden_state.mean((1, 2)))
    torch.testing.assert_close(model.classifier(b.pooler_output), out.logits)
    with pytest.raises(NotImplementedError, match="output_attentions"):
        model(x, output_attentions=True)


def test_backbone_feature_maps():
    cfg = NatConfig(**{**TINY, "out_features": ["stem", "stage2", "stage4"]})
    out = NatBackbone(cfg).eval()(torch.randn(1, 3, 64, 64))
    assert [tuple(f.shape) for f in out.feature_maps] == [(1, 16, 16, 16), (1, 32, 8, 8), (1, 128, 2, 2)]
    for f in out.feature_maps:  # each map went through its own LayerNorm (unit init): per-pixel mean 0, var 1
        torch.testing.assert_close(f.mean(1), torch.zeros_like(f.mean(1)), atol=1e-5, rtol=0)


# -- checkpoints -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", [NatForImageClassification, NatModel])
def test_save_pretrained_round_trip(tmp_path, cls):
    model = tiny_model(layer_scale_init_value=1e-5)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    loaded = cls.from_pretrained(tmp_path)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        if cls is NatModel:  # the trunk of a classification checkpoint, head left out
            torch.testing.assert_close(loaded(x).pooler_output, model.nat(x).pooler_output, atol=0, rtol=0)
        else:
            torch.testing.assert_close(loaded(x).logits, model(x).logits, atol=0, rtol=0)
    assert not loaded.training


def test_backbone_from_a_classification_checkpoint(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    backbone = NatBackbone.from_pretrained(tmp_path, out_features=["stage1", "stage3"])
    assert sorted(backbone.loading_info["initialized"]) == [
        "hidden_states_norms.stage1.bias",
        "hidden_states_norms.stage1.weight",
        "hidden_states_norms.stage3.bias",
        "hidden_states_norms.stage3.weight",
    ]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        states = model(x, output_hidden_states=True).hidden_states
        maps = backbone(x).feature_maps
    stage1 = torch.nn.functional.layer_norm(model.nat.encoder.levels[0](states[0])[1], (16,))
    torch.testing.assert_close(maps[0], stage1.permute(0, 3, 1, 2), atol=1e-5, rtol=0)
    assert maps[1].shape == (1, 64, 4, 4)


def test_pytorch_model_bin_and_overrides(tmp_path):
    model = tiny_model()
    model.config.to_json_file(tmp_path / "config.json")
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    loaded = NatForImageClassification.from_pretrained(tmp_path, attention_backend="flex")
    assert loaded.config.attention_backend == "flex"
    fresh_head = NatForImageClassification.from_pretrained(
        tmp_path, num_labels=3, ignore_mismatched_sizes=True
    )
    assert fresh_head.classifier.out_features == 3
    assert "classifier.weight" in fresh_head.loading_info["initialized"]
    with pytest.raises(KeyError, match="shape mismatches.*classifier.weight"):
        NatForImageClassification.from_pretrained(tmp_path, num_labels=3)


def test_strict_load_lists_missing_and_unexpected_keys(tmp_path):
    state = tiny_model().state_dict()
    state.pop("nat.encoder.levels.1.layers.0.attention.self.rpb")
    state["nat.encoder.levels.1.layers.0.gamma"] = torch.ones(3)
    NatConfig(**TINY).to_json_file(tmp_path / "config.json")
    torch.save({"state_dict": state}, tmp_path / "pytorch_model.bin")
    with pytest.raises(KeyError) as err:
        NatForImageClassification.from_pretrained(tmp_path)
    assert "missing keys (1): ['nat.encoder.levels.1.layers.0.attention.self.rpb']" in str(err.value)
    assert "unexpected keys (1): ['nat.encoder.levels.1.layers.0.gamma']" in str(err.value)


def test_original_keys_are_converted():
    dim = 8
    sd = {
        "patch_embed.proj.0.weight": torch.zeros(4, 3, 3, 3),
        "patch_embed.proj.1.weight": torch.zeros(dim, 4, 3, 3),
        "levels.0.blocks.0.attn.rpb": torch.zeros(2, 5, 5),
        "levels.0.blocks.0.attn.qkv.weight": torch.arange(3 * dim * dim, dtype=torch.float).view(
            3 * dim, dim
        ),
        "levels.0.blocks.0.attn.qkv.bias": torch.arange(3 * dim, dtype=torch.float),
        "levels.0.blocks.0.mlp.fc1.weight": torch.zeros(2 * dim, dim),
        "levels.0.blocks.0.gamma1": torch.full((dim,), 1.0),
        "levels.0.blocks.0.gamma2": torch.full((dim,), 2.0),
        "levels.0.downsample.reduction.weight": torch.zeros(2 * dim, dim, 3, 3),
        "norm.weight": torch.zeros(dim),
        "head.weight": torch.zeros(10, dim),
    }
    cfg = ckpt.config_from_original(sd)
    assert cfg == {
        "num_channels": 3,
        "embed_dim": dim,
        "depths": [1],
        "num_heads": [2],
        "kernel_size": 3,
        "mlp_ratio": 2.0,
        "qkv_bias": True,
        "layer_scale_init_value": 1e-5,
        "num_labels": 10,
    }
    hf = ckpt.original_to_hf(sd)
    layer = "nat.encoder.levels.0.layers.0."
    assert torch.equal(
        hf[layer + "attention.self.key.weight"], sd["levels.0.blocks.0.attn.qkv.weight"][dim : 2 * dim]
    )
    assert torch.equal(
        hf[layer + "attention.self.value.bias"], torch.arange(2 * dim, 3 * dim, dtype=torch.float)
    )
    assert torch.equal(hf[layer + "layer_scale_parameters"][1], torch.full((dim,), 2.0))
    assert {
        "nat.encoder.levels.0.downsample.reduction.weight",
        "nat.layernorm.weight",
        "classifier.weight",
        "nat.embeddings.patch_embeddings.projection.1.weight",
    } <= set(hf)


def test_hub_id_resolves_from_local_cache_only(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "hub")):
        NatForImageClassification.from_pretrained("shi-labs/nat-mini-in1k-224")
    snapshot = tmp_path / "hub" / "models--shi-labs--nat-mini-in1k-224" / "snapshots" / ("a" * 40)
    tiny_model().save_pretrained(snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("a" * 40)
    loaded = create_model("nat_mini", pretrained="shi-labs/nat-mini-in1k-224")
    assert loaded.config.embed_dim == 16 and loaded.config.num_labels == 5


# -- backends ------------------------------------------------------------------------------------------------
def _same_logits(model, x, backend, drop_rpb=False):
    with torch.no_grad():
        model.set_attention_backend("reference", drop_rpb=drop_rpb)
        want = model(x).logits
        model.set_attention_backend(backend, drop_rpb=drop_rpb)
        got = model(x).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=0)
    return want


@pytest.mark.slow
@pytest.mark.parametrize("backend", [b for b in ("flex", "tiled") if b in backends()])
def test_exact_backends_agree_on_the_whole_model(backend):
    # one stage, one map shape: flex compiles once (several seconds per shape on CPU)
    model = tiny_model(depths=[1], num_heads=[2], dilations=[[2]])
    _same_logits(model, torch.randn(1, 3, 64, 56), backend)


@pytest.mark.slow
def test_natten_without_rpb_agrees_with_reference_without_rpb():
    model = tiny_model(depths=[1, 1], num_heads=[2, 2])
    with torch.no_grad():
        for layer in model.nat.encoder.levels:
            layer.layers[0].attention.self.rpb.normal_(0, 2.0)
    x = torch.randn(1, 3, 32, 32)
    _same_logits(model, x, "natten", drop_rpb=True)
    with torch.no_grad():
        no_rpb = model.nat(x).last_hidden_state
        model.set_attention_backend("reference", drop_rpb=False)
        assert (model.nat(x).last_hidden_state - no_rpb).abs().max() > 1e-3  # the RPB matters
    with pytest.raises(ValueError, match="pass drop_rpb=True"):
        model.set_attention_backend("natten", drop_rpb=False)


# -- registry, info, transforms, CLI -----------------------------------------------------------------------
def test_registry_names_overrides_and_errors():
    assert list_models("nat_*") == [
        "nat_mini",
        "nat_tiny",
        "nat_small",
        "nat_base",
        "nat_isotropic_small",
        "nat_isotropic_base",
    ]
    assert len(list_models()) == 18  # + isotropic NAT-S/B and ViT+-S/B (DiNAT Table 5)
    m = create_model("dinat_mini", depths=[2, 2, 2, 2], num_heads=[2, 2, 2, 2], embed_dim=16, num_labels=10)
    assert m.config.dilations == [[1, 8], [1, 4], [1, 2], [1, 1]] and m.config.num_labels == 10
    assert create_model("nat_small", depths=[1, 1, 1, 1]).config.layer_scale_init_value == 1e-5
    with pytest.raises(ValueError, match="did you mean nat_tiny"):
        create_model("nat_tiyn")
    with pytest.raises(ValueError, match="NAT/DiNAT models only"):
        create_model("swin_tiny", attention_backend="flex")


def test_timm_models_overrides_pretrained_file_and_logits(tmp_path):
    model = create_model("convnext_tiny", num_labels=4, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64))
    x = torch.randn(1, 3, 64, 64)
    torch.save({"state_dict_ema": model.state_dict()}, tmp_path / "ckpt.pth")
    loaded = create_model(
        "convnext_tiny",
        pretrained=tmp_path / "ckpt.pth",
        num_labels=4,
        depths=(1, 1, 1, 1),
        dims=(8, 16, 32, 64),
    )
    with torch.no_grad():
        assert torch.equal(logits(loaded, x), model.eval()(x)) and logits(loaded, x).shape == (1, 4)
        assert logits(tiny_model(), x).shape == (1, 5)


@pytest.mark.parametrize(
    "name, paper_m",
    [
        ("nat_mini", 20),
        ("nat_tiny", 28),
        ("nat_small", 51),
        ("nat_base", 90),
        ("swin_tiny", 28),
        ("swin_small", 50),
        ("swin_base", 88),
        ("convnext_tiny", 28),
        ("convnext_small", 50),
        ("convnext_base", 89),
    ],
)
def test_params_and_macs_match_the_paper_table(name, paper_m):
    info = model_info(name)
    millions = info["params"] / 1e6
    # the tables round (NAT, Swin, ConvNeXt-B 88.6 -> 89) or truncate (ConvNeXt-T 28.6 -> 28)
    assert isinstance(info["params"], int) and paper_m in (round(millions), int(millions))
    assert info["paper_params"] == paper_m * 10**6
    assert round(info["macs"] / 1e9, 1) == info["paper_gmacs"]


def test_meta_counts_equal_a_real_model_and_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    from natbench.models.info import count_macs

    real = create_model("nat_mini")
    assert sum(p.numel() for p in real.parameters()) == model_info("nat_mini")["params"]
    model = tiny_model()  # reference backend: plain einsums that the flop counter sees
    x = torch.randn(1, 3, 64, 48)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    assert count_macs(model, x) * 2 == counter.get_total_flops()


def test_image_processor_is_the_papers_recipe():
    from PIL import Image

    transform = image_processor("nat_mini")
    text = repr(transform)
    assert "size=256" in text and "bicubic" in text and "CenterCrop(size=(224, 224))" in text
    out = transform(Image.new("RGB", (320, 300), color=(124, 116, 104)))
    assert out.shape == (3, 224, 224)
    torch.testing.assert_close(out[:, 100, 100], torch.tensor([0.0, 0.0, 0.0]), atol=0.02, rtol=0)
    assert image_processor(create_model("swin_tiny")).__class__ is transform.__class__


def test_models_cli_json(capsys):
    from natbench.cli import main

    assert main(["models", "--json", "--filter", "*_tiny"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == ["nat_tiny", "dinat_tiny", "swin_tiny", "convnext_tiny"]
    for r in rows:
        assert isinstance(r["params"], int) and isinstance(r["macs"], int) and r["resolution"] == 224
    assert rows[0]["macs"] == model_info("nat_tiny")["macs"]


def test_fused_qkv_equals_three_separate_projections():
    """The one qkv GEMM gives what query/key/value Linears give, values and gradients, without/with bias."""
    from natbench.attention import neighborhood_attention_2d

    for bias in (True, False):
        model = tiny_model(qkv_bias=bias, depths=[1], num_heads=[2])
        attn = model.nat.encoder.levels[0].layers[0].attention.self
        x = torch.randn(2, 9, 11, attn.num_heads * attn.head_dim, requires_grad=True)
        got = attn(x)
        shape = (2, 9, 11, attn.num_heads, attn.head_dim)
        q, k, v = (p(x).view(shape) for p in (attn.query, attn.key, attn.value))
        want = neighborhood_attention_2d(q, k, v, attn.kernel_size, rpb=attn.rpb, backend="reference")
        torch.testing.assert_close(got, want.reshape(got.shape), atol=1e-5, rtol=1e-5)
        g_got = torch.autograd.grad(got.sum(), (x, attn.query.weight, attn.value.weight))
        g_want = torch.autograd.grad(want.sum(), (x, attn.query.weight, attn.value.weight))
        for a, b in zip(g_got, g_want):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
        assert "nat.encoder.levels.0.layers.0.attention.self.query.weight" in model.state_dict()


def test_channels_last_stem_and_tiled_model_match_reference():
    model = tiny_model(depths=[1, 1], num_heads=[2, 2])
    x = torch.randn(2, 3, 45, 38)
    with torch.no_grad():
        want = model(x).logits
        model.set_attention_backend("tiled")
        got = model(x.contiguous(memory_format=torch.channels_last)).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_fused_qkv_cache_follows_weight_updates_and_dtype():
    model = tiny_model(depths=[1], num_heads=[2])
    x = torch.randn(1, 3, 32, 32)
    attn = model.nat.encoder.levels[0].layers[0].attention.self
    y = torch.randn(1, 8, 8, 16)
    with torch.no_grad():
        before = attn(y)
        attn(y)  # served from the cached fused weight
        attn.value.weight.mul_(2.0)
        assert (attn(y) - before).abs().max() > 1e-3
        after = model(x).logits
        model.set_attention_backend("reference")
        want = model(x).logits
        torch.testing.assert_close(after, want, atol=1e-4, rtol=1e-4)
        assert model.double()(x.double()).logits.dtype == torch.float64


@pytest.mark.parametrize("name", ["nat_mini", "dinat_mini", "nat_isotropic_small"])
def test_registry_builds_skip_only_the_init_that_init_weights_redoes(name, monkeypatch):
    from natbench.models import layers

    skipped = []

    def poison(self):  # a layer init_weights missed would keep these NaNs
        skipped.append(type(self))
        for p in self.parameters(recurse=False):
            p.data.fill_(float("nan"))

    own = {
        c: dict(vars(c)).get("reset_parameters")
        for c in (torch.nn.Linear, torch.nn.Conv2d, torch.nn.LayerNorm)
    }
    monkeypatch.setattr(layers, "_no_init", poison)
    model = create_model(name)
    assert skipped and all(torch.isfinite(p).all() for p in model.parameters())
    linear = torch.nn.Linear(64, 64)  # the classes' own init is back outside the builder
    assert linear.weight.abs().max() <= 1 / 8 and linear.weight.std() > 0.02
    assert {c: dict(vars(c)).get("reset_parameters") for c in own} == own  # Conv2d's stays inherited
