"""natbench profile: ops land in the right stage and part."""

from __future__ import annotations

import torch

from natbench.cli import main
from natbench.measure import profile
from natbench.models import NatConfig, NatForImageClassification


def test_stage_and_part_names_for_nat_and_timm_paths():
    assert profile.stage_of("nat.embeddings.patch_embeddings.projection.0") == "stem"
    assert profile.stage_of("nat.encoder.levels.2.layers.3.attention.self") == "stage3"
    assert profile.stage_of("layers.0.blocks.1.attn") == "stage1"
    assert profile.stage_of("classifier") == "head"
    assert profile.part_of("layers.0.blocks.1.attn.qkv", torch.nn.Linear(2, 6)) == "qkv"
    assert profile.part_of("layers.0.blocks.1.attn.proj", torch.nn.Linear(2, 2)) == "proj"
    assert profile.part_of("layers.0.blocks.1.mlp.fc1", torch.nn.Linear(2, 2)) == "mlp"
    assert profile.part_of("nat.encoder.levels.0.downsample.reduction", torch.nn.Conv2d(1, 1, 3)) == "conv"


def test_profile_attributes_every_part_of_a_small_nat():
    torch.manual_seed(0)
    cfg = NatConfig(embed_dim=16, depths=[1, 1], num_heads=[1, 2], num_labels=3, attention_backend="tiled")
    model = NatForImageClassification(cfg).eval()
    table = profile.profile_model(model, torch.randn(2, 3, 64, 64), iterations=1, warmup=1)
    for key in [
        ("stem", "conv"),
        ("stage1", "attn"),
        ("stage1", "qkv"),
        ("stage1", "mlp"),
        ("stage2", "norm"),
    ]:
        assert table.get(key, 0) > 0, key
    assert all(v >= 0 for v in table.values())
    text = profile.format_table("t", table)
    assert "stage2" in text and "share" in text


def test_profile_command_prints_a_table(capsys):
    args = [
        "profile",
        "nat_mini",
        "--batch",
        "1",
        "--dtype",
        "float32",
        "--resolution",
        "64",
        "--iterations",
        "1",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "nat_mini batch 1 float32 64px" in out and "stage4" in out and "attn" in out
