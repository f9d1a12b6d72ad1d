"""natbench accuracy on a generated ImageFolder: numbers equal a hand computation over the same images."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from natbench.accuracy import compare_backends, evaluate
from natbench.models import create_model

CLASSES = 8
IMG = 64  # crop side; stage maps 16, 8, 4, 2: map 16 > kernel 7, so borders and RPB both matter
TINY = dict(depths=[1, 1, 1, 1], embed_dim=16, num_heads=[1, 1, 1, 1], num_labels=CLASSES)
SIZES = [(48, 64), (64, 48), (33, 40), (64, 64), (57, 35), (40, 40)]
BACKEND = "reference"  # exact and compile-free: keeps the tests quick on 2 cores
FAST = dict(batch_size=5, workers=0, img_size=IMG, backend=BACKEND, progress=False)
# natten's CPU path pays ~1 s per new input shape: one batch of all 17 images, as hand_logits runs them
ONE_BATCH = dict(batch_size=32, workers=0, img_size=IMG, progress=False)


def hand_transform(img: Image.Image) -> torch.Tensor:
    # The papers' recipe, written out independently of natbench: short side to IMG / 0.875 (bicubic), center crop.
    from torchvision.transforms import functional as TF

    img = TF.resize(img.convert("RGB"), int(IMG / 0.875), interpolation=TF.InterpolationMode.BICUBIC)
    x = TF.to_tensor(TF.center_crop(img, [IMG, IMG]))
    return TF.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def hand_logits(checkpoint: Path, files: list[Path], **overrides) -> torch.Tensor:
    model = create_model(
        "nat_mini", pretrained=str(checkpoint), **{"attention_backend": BACKEND, **overrides}
    )
    with torch.inference_mode():
        return model(torch.stack([hand_transform(Image.open(f)) for f in files])).logits.float()


def save_tiny(directory: Path, seed: int, rpb_scale: float) -> Path:
    torch.manual_seed(seed)
    model = create_model("nat_mini", pretrained=None, **TINY)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".rpb"):
                p.copy_(torch.randn_like(p) * rpb_scale)
            elif name.startswith("classifier."):
                p.mul_(50)  # spread the logits so that predictions differ between images
    return model.save_pretrained(directory)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("ckpt") / "tiny", seed=0, rpb_scale=1.0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, tiny):
    """17 JPEGs of several sizes filed so that the tiny model gets a known share right.

    Images 0..7 go to class i (every folder gets one); image i >= 8 to (the model's own top-1 + i) mod CLASSES,
    so images 8 and 16 are right and 9..15 wrong: top-1 is neither 0 nor 100 % whatever the model predicts.
    """
    rng = np.random.default_rng(1)
    stage = tmp_path_factory.mktemp("stage")
    files = []
    for i in range(17):
        h, w = SIZES[i % len(SIZES)]
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) // (1 + i % 4) + rng.integers(0, 60)
        files.append(stage / f"img{i:02d}.JPEG")
        Image.fromarray(pixels.astype(np.uint8)).save(files[-1], quality=90)
    logits = hand_logits(tiny, files)
    labels = [i if i < CLASSES else (int(p) + i) % CLASSES for i, p in enumerate(logits.argmax(1))]
    root = tmp_path_factory.mktemp("data") / "val"
    targets = []
    for f, label in zip(files, labels):
        (root / f"class_{label}").mkdir(parents=True, exist_ok=True)
        targets.append(root / f"class_{label}" / f.name)
        shutil.copy(f, targets[-1])
    assert len({t.parent for t in targets}) == CLASSES
    top5 = logits.topk(5, dim=1).indices
    y = torch.tensor(labels)
    expected = {
        "count": len(files),
        "top1": 100.0 * float((top5[:, 0] == y).sum()) / len(files),
        "top5": 100.0 * float((top5 == y[:, None]).any(1).sum()) / len(files),
    }
    assert 0 < expected["top1"] < 100
    return root, targets, labels, logits, expected


def test_top1_top5_count_match_hand_computation(tiny, dataset):
    root, _, _, _, expected = dataset
    result = evaluate("nat_mini", str(tiny), str(root), **FAST)
    assert result["count"] == expected["count"]
    assert result["top1"] == pytest.approx(expected["top1"])
    assert result["top5"] == pytest.approx(expected["top5"])
    assert (
        result["corrupt"] == 0 and result["num_classes"] == CLASSES and result["data_source"] == "imagefolder"
    )
    assert result["data_config"]["interpolation"] == "bicubic" and result["data_config"]["crop_pct"] == 0.875
    assert result["kernel"].startswith("reference:") and result["images_per_s"] > 0


def test_limit_takes_images_spread_over_classes(tiny, dataset):
    root, targets, labels, logits, _ = dataset
    order = sorted(range(len(targets)), key=lambda i: (f"class_{labels[i]}", targets[i].name))
    chosen = [order[i * len(order) // 6] for i in range(6)]
    y = torch.tensor([labels[i] for i in chosen])
    want = 100.0 * float((logits[chosen].argmax(1) == y).sum()) / 6
    result = evaluate("nat_mini", str(tiny), str(root), limit=6, **FAST)
    assert result["count"] == 6 and result["top1"] == pytest.approx(want)


def test_corrupt_images_are_reported_and_excluded(tiny, dataset, tmp_path):
    root, _, _, _, expected = dataset
    data = tmp_path / "val"
    shutil.copytree(root, data)
    truncated = data / "class_0" / "truncated.JPEG"
    whole = next((data / "class_1").iterdir()).read_bytes()
    truncated.write_bytes(whole[: len(whole) // 3])
    (data / "class_2" / "not_an_image.JPEG").write_text("hello")
    result = evaluate("nat_mini", str(tiny), str(data), **FAST)
    assert result["corrupt"] == 2
    assert sorted(Path(c["path"]).name for c in result["corrupt_files"]) == [
        "not_an_image.JPEG",
        "truncated.JPEG",
    ]
    assert all(c["error"] for c in result["corrupt_files"]) and "excluded" in result["corrupt_policy"]
    assert result["count"] == expected["count"]
    assert result["top1"] == pytest.approx(expected["top1"]) and result["top5"] == pytest.approx(
        expected["top5"]
    )


def test_labels_file_and_ilsvrc_devkit_give_the_imagefolder_numbers(tiny, dataset, tmp_path):
    import scipy.io

    root, targets, labels, _, expected = dataset
    flat = tmp_path / "flat"
    flat.mkdir()
    for n, t in enumerate(targets, 1):
        shutil.copy(t, flat / f"ILSVRC2012_val_{n:08d}.JPEG")
    (tmp_path / "labels.txt").write_text(
        "".join(f"ILSVRC2012_val_{n:08d}.JPEG {y}\n" for n, y in enumerate(labels, 1))
    )
    by_file = evaluate("nat_mini", str(tiny), str(flat), labels=str(tmp_path / "labels.txt"), **FAST)
    # devkit: ILSVRC ids in an order unlike sorted wnids, plus one non-leaf synset that must be ignored
    wnids = [f"n0{c}000000" for c in range(CLASSES)]  # ImageFolder order of class_<c> = this sorted order
    ilsvrc_id = {c: CLASSES - c for c in range(CLASSES)}
    rec = np.zeros(
        CLASSES + 1, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    )
    for c in range(CLASSES):
        rec[c] = (ilsvrc_id[c], wnids[c], f"class {c}", 0)
    rec[CLASSES] = (CLASSES + 1, "n09999999", "a parent", 3)
    (tmp_path / "devkit" / "data").mkdir(parents=True)
    scipy.io.savemat(tmp_path / "devkit" / "data" / "meta.mat", {"synsets": rec})
    (tmp_path / "devkit" / "data" / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{ilsvrc_id[y]}\n" for y in labels)
    )
    by_devkit = evaluate("nat_mini", str(tiny), str(flat), devkit=str(tmp_path / "devkit"), **FAST)
    # torchvision's devkit record (the meta.bin torchvision.datasets.imagenet makes from the archive)
    (tmp_path / "tv").mkdir()
    torch.save(
        ({w: (f"class {c}",) for c, w in enumerate(wnids)}, [wnids[y] for y in labels]),
        tmp_path / "tv" / "meta.bin",
    )
    by_torchvision = evaluate("nat_mini", str(tiny), str(flat), devkit=str(tmp_path / "tv"), **FAST)
    assert by_torchvision["data_source"] == "ilsvrc-devkit"
    for r in (by_file, by_devkit, by_torchvision):
        assert r["count"] == expected["count"]
        assert r["top1"] == pytest.approx(expected["top1"]) and r["top5"] == pytest.approx(expected["top5"])
    assert by_devkit["data_source"] == "ilsvrc-devkit" and by_file["data_source"] == "labels-file"


def test_clear_errors(tiny, dataset, tmp_path, monkeypatch):
    root, _, _, _, _ = dataset
    with pytest.raises(FileNotFoundError, match="does not exist"):
        evaluate("nat_mini", str(tiny), str(tmp_path / "missing"), **FAST)
    monkeypatch.delenv("NATBENCH_IMAGENET", raising=False)
    with pytest.raises(FileNotFoundError, match="NATBENCH_IMAGENET"):
        evaluate("nat_mini", str(tiny), None, **FAST)
    empty_class = tmp_path / "empty_class"
    shutil.copytree(root, empty_class)
    (empty_class / "class_9").mkdir()
    with pytest.raises(ValueError, match=r"class_9"):
        evaluate("nat_mini", str(tiny), str(empty_class), **FAST)
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        evaluate("nat_mini", str(tiny), str(tmp_path / "nothing"), **FAST)
    fewer = tmp_path / "fewer"
    shutil.copytree(root, fewer)
    shutil.rmtree(fewer / "class_7")
    with pytest.raises(ValueError, match=f"7 classes but nat_mini's head has {CLASSES} outputs"):
        evaluate("nat_mini", str(tiny), str(fewer), **FAST)
    flat = tmp_path / "flat"
    flat.mkdir()
    shutil.copy(next((root / "class_0").iterdir()), flat / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(ValueError, match="--devkit"):
        evaluate("nat_mini", str(tiny), str(flat), **FAST)
    with pytest.raises(ValueError, match="unknown backend"):
        evaluate("nat_mini", str(tiny), str(root), **{**FAST, "backend": "cudnn"})
    with pytest.raises(ValueError, match="unknown model"):
        evaluate("nat_tinyy", str(tiny), str(root), **FAST)
    with pytest.raises(ValueError, match="no neighborhood attention"):
        compare_backends("swin_tiny", "none", str(root), **ONE_BATCH)


def test_timm_baseline_matches_hand_computation(dataset):
    """convnext (a timm model returning a logits tensor) through the same evaluator; same seed, same init."""
    root, targets, labels, _, _ = dataset
    small = dict(depths=(1, 1, 1, 1), dims=(16, 32, 64, 128), num_labels=CLASSES)
    torch.manual_seed(3)
    result = evaluate("convnext_tiny", "none", str(root), model_kwargs=small, **{**FAST, "backend": "auto"})
    torch.manual_seed(3)
    model = create_model("convnext_tiny", **small).eval()
    with torch.inference_mode():
        logits = model(torch.stack([hand_transform(Image.open(f)) for f in targets]))
    y = torch.tensor(labels)
    assert result["count"] == len(targets) and result["kernel"] is None
    assert result["top1"] == pytest.approx(100.0 * int((logits.argmax(1) == y).sum()) / len(y))
    assert result["top5"] == pytest.approx(
        100.0 * int((logits.topk(5, 1).indices == y[:, None]).sum()) / len(y)
    )


def test_compare_backends_matches_hand_kl_and_agreement(tiny, dataset):
    root, targets, labels, exact_logits, expected = dataset
    result = compare_backends("nat_mini", str(tiny), str(root), (BACKEND, "natten-drop-rpb"), **ONE_BATCH)
    dropped = hand_logits(tiny, targets, attention_backend="natten", drop_rpb=True)
    log_p, log_q = exact_logits.double().log_softmax(1), dropped.double().log_softmax(1)
    kl = float((log_p.exp() * (log_p - log_q)).sum(1).mean())
    agree = 100.0 * int((exact_logits.argmax(1) == dropped.argmax(1)).sum()) / len(labels)
    y = torch.tensor(labels)
    dropped_top1 = 100.0 * int((dropped.argmax(1) == y).sum()) / len(labels)
    assert result["count"] == expected["count"]
    assert result["backends"][BACKEND]["top1"] == pytest.approx(expected["top1"])
    assert result["backends"]["natten-drop-rpb"]["top1"] == pytest.approx(dropped_top1)
    assert result["top1_diff"] == pytest.approx(dropped_top1 - expected["top1"])
    assert result["backends"]["natten-drop-rpb"]["kernel"].startswith("natten:")
    assert 0 <= result["agreement"] <= 100 and result["agreement"] == pytest.approx(agree)
    assert result["kl_mean"] > 1e-6 and result["kl_mean"] == pytest.approx(kl, rel=1e-4)


def test_compare_backends_agree_exactly_when_rpb_is_zero(dataset, tmp_path):
    root = dataset[0]
    zero = save_tiny(tmp_path / "zero_rpb", seed=0, rpb_scale=0.0)
    result = compare_backends("nat_mini", str(zero), str(root), ("exact", "natten-drop-rpb"), **ONE_BATCH)
    assert result["backends"]["exact"]["kernel"] != result["backends"]["natten-drop-rpb"]["kernel"]
    assert result["agreement"] == 100.0 and result["kl_mean"] == pytest.approx(0.0, abs=1e-9)
    assert result["top1_diff"] == 0.0 and result["top5_diff"] == 0.0


def _cli(*argv: str) -> dict:
    out = subprocess.run(
        [*argv], capture_output=True, text=True, timeout=240, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout)


@pytest.mark.slow  # ~35 s on 2 busy cores (three interpreters); still in the default run
def test_cli_json_out_row_and_torchrun_two_processes_match_one(tiny, dataset, tmp_path):
    from natbench.results import read_rows

    root, _, _, _, expected = dataset
    data = tmp_path / "val"
    shutil.copytree(root, data)
    (data / "class_3" / "broken.JPEG").write_text("not a jpeg")  # 18 files: 9 per rank, one unreadable
    args = [
        "accuracy",
        "--model",
        "nat_mini",
        "--checkpoint",
        str(tiny),
        "--data",
        str(data),
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--img-size",
        str(IMG),
        "--backend",
        BACKEND,
        "--json",
        "--no-progress",
    ]
    one = _cli(sys.executable, "-m", "natbench", *args, "--out", str(tmp_path / "res"))
    two = _cli(
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "natbench",
        *args,
    )
    assert two["world_size"] == 2 and one["world_size"] == 1
    for r in (one, two):
        assert r["count"] == expected["count"] and r["corrupt"] == 1
        assert r["top1"] == pytest.approx(expected["top1"]) and r["top5"] == pytest.approx(expected["top5"])
        assert Path(r["corrupt_files"][0]["path"]).name == "broken.JPEG"
    (row,) = read_rows(tmp_path / "res")
    assert row["kind"] == "accuracy" and row["status"] == "ok" and row["target"] == "nat_mini"
    assert row["top1"] == one["top1"] and row["count"] == expected["count"] and row["backend"] == BACKEND
    assert row["checkpoint"] == str(tiny) and row["throughput"] > 0 and row["kernel"].startswith(BACKEND)
    assert row["env"]["packages"]["torch"]
    import hashlib

    weights = Path(tiny) / "model.safetensors"  # an HF directory: its weights file is the record
    assert row["checkpoint_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert row["crop_pct"] == one["data_config"]["crop_pct"] and row["interpolation"] == "bicubic"
    assert row["resolution"] == IMG and row["dataset"] is None  # --data given, not NATBENCH_IMAGENET


def test_cli_missing_dataset_is_one_clear_error(tmp_path, capsys, monkeypatch):
    from natbench.cli import main
    from natbench.results import read_rows

    monkeypatch.delenv("NATBENCH_IMAGENET", raising=False)
    code = main(["accuracy", "--model", "nat_mini", "--checkpoint", "none", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "NATBENCH_IMAGENET" in err and err.count("error") == 1
    (row,) = read_rows(tmp_path)
    assert row["status"] == "skipped" and "NATBENCH_IMAGENET" in row["error"]


def test_row_records_the_dataset_when_it_came_from_natbench_imagenet(tiny, dataset, tmp_path, monkeypatch):
    from natbench.cli import main
    from natbench.results import read_rows

    root = dataset[0]
    monkeypatch.setenv("NATBENCH_IMAGENET", str(root))
    args = ["accuracy", "--model", "nat_mini", "--checkpoint", str(tiny), "--batch-size", "4"]
    args += ["--workers", "0", "--img-size", str(IMG), "--backend", BACKEND, "--no-progress", "--limit", "4"]
    assert main([*args, "--crop-pct", "0.9", "--out", str(tmp_path)]) == 0
    (row,) = read_rows(tmp_path)
    assert row["dataset"] == str(root) and row["crop_pct"] == pytest.approx(0.9)
    assert row["resolution"] == IMG and len(row["checkpoint_sha256"]) == 64
