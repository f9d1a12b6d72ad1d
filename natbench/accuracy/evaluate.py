"""ImageNet-style top-1/top-5 evaluation of one model, or of one checkpoint on two NA backends side by side."""

from __future__ import annotations

import os
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Subset

from natbench.accuracy import distributed
from natbench.accuracy.data import Samples, even_subset, load_samples
from natbench.accuracy.loading import ValidationImages, collate, eval_transform

CORRUPT_POLICY = (
    "unreadable images are excluded: not in count, not in the top-1/top-5 denominators; "
    "they are listed in corrupt_files"
)
# --backend / --compare-backends names beyond the NA backends: "exact" is the model's normal path with RPB.
BACKEND_SPECS = {
    "exact": {"attention_backend": "auto"},
    "natten-drop-rpb": {"attention_backend": "natten", "drop_rpb": True},
}
NA_FAMILIES = ("nat", "dinat")


def is_na_model(model_name: str) -> bool:
    """True for NAT/DiNAT; unknown names raise natbench.models' ValueError (with close matches)."""
    from natbench.models.registry import get_entry

    return get_entry(model_name).family in NA_FAMILIES


def backend_overrides(model_name: str, backend: str) -> dict[str, Any]:
    """create_model keyword arguments that select `backend` ("exact", "natten-drop-rpb" or an NA backend)."""
    from natbench.attention import backends

    if backend in BACKEND_SPECS:
        spec = dict(BACKEND_SPECS[backend])
    elif backend in backends() and not backends()[backend].supports_rpb and is_na_model(model_name):
        raise ValueError(
            f"backend {backend!r} has no relative positional bias, so it cannot run {model_name} "
            "exactly; use --backend natten-drop-rpb to drop the RPB (changes the logits) or "
            "auto/tiled/flex/reference"
        )
    elif backend == "auto" or backend in backends():
        spec = {"attention_backend": backend}
    else:
        raise ValueError(
            f"unknown backend {backend!r}; choose one of {sorted([*BACKEND_SPECS, 'auto', *backends()])}"
        )
    if not is_na_model(model_name):
        if spec != {"attention_backend": "auto"}:
            raise ValueError(
                f"{model_name} has no neighborhood attention, so --backend {backend} does not apply; "
                "use --backend auto (or exact)"
            )
        return {}
    return spec


def _pretrained(checkpoint) -> str | None:
    if checkpoint is None or str(checkpoint).lower() == "none":
        return None
    return str(checkpoint)


def build_model(
    model_name: str,
    checkpoint,
    backend: str = "auto",
    model_kwargs: dict | None = None,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """create_model(model_name, pretrained=checkpoint) in eval mode on `device`, running `backend`.

    checkpoint: HF directory (its config.json wins), .pth/.safetensors file, hub id in the local cache, or
    "none" for random initialization (tests only: its accuracy is chance).
    """
    from natbench.models import create_model

    kwargs = {**(model_kwargs or {}), **backend_overrides(model_name, backend)}
    model = create_model(model_name, pretrained=_pretrained(checkpoint), **kwargs)
    return model.eval().to(device)


def head_size(model: torch.nn.Module) -> int | None:
    config = getattr(model, "config", None)
    if config is not None and getattr(config, "num_labels", None) is not None:
        return int(config.num_labels)
    n = getattr(model, "num_classes", None)
    return int(n) if n is not None else None


def check_labels(samples: Samples, classes: int | None, model_name: str) -> None:
    if classes is None:
        return
    if classes == 0:
        raise ValueError(f"{model_name} has no classification head (num_labels=0); evaluate a classifier")
    if samples.source == "labels-file":
        if samples.num_classes > classes:
            raise ValueError(
                f"the labels file uses label {samples.num_classes - 1}, but {model_name}'s head has "
                f"{classes} outputs (labels 0..{classes - 1}); fix the labels or the checkpoint"
            )
    elif samples.num_classes != classes:
        raise ValueError(
            f"the data has {samples.num_classes} classes but {model_name}'s head has {classes} outputs; "
            "evaluate a checkpoint trained on these classes (for a random-init test model pass "
            f"--model-kwargs num_labels={samples.num_classes})"
        )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _loader(
    samples: Samples,
    indices: list[int],
    transform,
    batch_size: int,
    workers: int | None,
    device: torch.device,
) -> DataLoader:
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    if workers is None:
        workers = min(
            4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        )
    if workers < 0:
        raise ValueError(f"--workers must be >= 0, got {workers}")
    dataset = Subset(ValidationImages(samples.items, transform), indices)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def _kl(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(p || q) per image of the softmax distributions, float64; rounding noise below 0 clamped to 0."""
    log_p = F.log_softmax(p_logits.double(), dim=-1)
    log_q = F.log_softmax(q_logits.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1).clamp_min(0)


def _run(
    model_name: str,
    checkpoint,
    backends: list[str],
    data,
    *,
    batch_size: int,
    workers: int | None,
    limit: int | None,
    labels,
    devkit,
    img_size: int | None,
    crop_pct: float | None,
    device: str | None,
    model_kwargs: dict | None,
    progress: bool,
) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from natbench.attention import last_kernel
    from natbench.env import collect
    from natbench.models import logits as model_logits

    for b in backends:
        backend_overrides(model_name, b)  # unknown names fail before any work
    samples = load_samples(data, labels=labels, devkit=devkit)
    ranks = distributed.setup(device)
    try:
        models: dict[str, torch.nn.Module] = {}
        for b in backends:
            models[b] = build_model(model_name, checkpoint, b, model_kwargs, ranks.device)
        if len(models) > 1:  # the same weights whatever each creation did (e.g. random init)
            first = next(iter(models.values()))
            for m in list(models.values())[1:]:
                m.load_state_dict(first.state_dict())
        classes = head_size(next(iter(models.values())))
        check_labels(samples, classes, model_name)
        transform, cfg = eval_transform(next(iter(models.values())), img_size=img_size, crop_pct=crop_pct)
        chosen = even_subset(len(samples.items), limit)
        loader = _loader(samples, ranks.shard(chosen), transform, batch_size, workers, ranks.device)

        topk, has_na = 5, is_na_model(model_name)
        count, agree, kl_sum = 0, 0, 0.0
        correct = {b: [0, 0] for b in backends}
        seconds = dict.fromkeys(backends, 0.0)
        kernels: dict[str, str | None] = dict.fromkeys(backends)
        corrupt: list[dict[str, str]] = []
        bar = tqdm(
            total=len(loader.dataset),
            unit="img",
            desc=f"{model_name} accuracy",
            disable=not (progress and ranks.is_main),
            dynamic_ncols=True,
        )
        start = time.perf_counter()
        for images, targets, _, bad in loader:
            corrupt += [{"path": samples.items[i][0], "error": err} for i, err in bad]
            bar.update(len(bad))
            if images is None:
                continue
            images = images.to(ranks.device, non_blocking=True)
            targets = targets.to(ranks.device)
            outs = {}
            for b, model in models.items():
                _sync(ranks.device)
                t0 = time.perf_counter()
                with torch.inference_mode():
                    out = model_logits(model, images).float()
                _sync(ranks.device)
                seconds[b] += time.perf_counter() - t0
                kernels[b] = last_kernel() if has_na else None
                if out.dim() != 2 or out.shape[0] != images.shape[0]:
                    raise RuntimeError(
                        f"{model_name} returned logits of shape {tuple(out.shape)} for a batch of "
                        f"{images.shape[0]}; expected [batch, classes]"
                    )
                if classes is None:
                    check_labels(samples, out.shape[1], model_name)
                    classes = out.shape[1]
                topk = min(5, out.shape[1])
                top = out.topk(topk, dim=1).indices
                correct[b][0] += int((top[:, 0] == targets).sum())
                correct[b][1] += int((top == targets[:, None]).any(dim=1).sum())
                outs[b] = out
            if len(backends) == 2:
                a, d = (outs[b] for b in backends)
                agree += int((a.argmax(1) == d.argmax(1)).sum())
                kl_sum += float(_kl(a, d).sum())
            count += images.shape[0]
            bar.update(images.shape[0])
        bar.close()
        wall = time.perf_counter() - start

        flat = [count, len(corrupt), agree, kl_sum] + [c for b in backends for c in correct[b]]
        total = ranks.sum(flat)
        slowest = ranks.max([wall] + [seconds[b] for b in backends])
        corrupt = sorted((c for part in ranks.gather(corrupt) for c in part), key=lambda c: c["path"])
    finally:
        ranks.close()

    count = int(total[0])
    if count == 0:
        raise ValueError(
            f"no image could be evaluated: {len(corrupt)} of {len(chosen)} files are unreadable "
            f"(first: {corrupt[0]['path'] if corrupt else 'none'})"
        )

    def pct(n: float) -> float:
        return 100.0 * n / count

    per_backend = {}
    for i, b in enumerate(backends):
        c1, c5 = total[4 + 2 * i], total[5 + 2 * i]
        per_backend[b] = {
            "backend": b,
            "kernel": kernels[b],
            "top1": pct(c1),
            "top5": pct(c5),
            "correct1": int(c1),
            "correct5": int(c5),
            "images_per_s": count / slowest[1 + i] if slowest[1 + i] > 0 else None,
        }
    result = {
        "model": model_name,
        "checkpoint": "none" if _pretrained(checkpoint) is None else str(checkpoint),
        "data": samples.root,
        "data_source": samples.source,
        "num_classes": classes,
        "count": count,
        "dataset_size": len(samples.items),
        "limit": limit,
        "topk": topk,
        "corrupt": int(total[1]),
        "corrupt_files": corrupt,
        "corrupt_policy": CORRUPT_POLICY,
        "notes": samples.notes,
        "wall_images_per_s": (count + int(total[1])) / slowest[0] if slowest[0] > 0 else None,
        "batch_size": batch_size,
        "world_size": ranks.world,
        "device": ranks.device.type,
        "dtype": "float32",
        "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
        "env": collect(),
    }
    if len(backends) == 2:
        a, d = backends
        result.update(
            backends=per_backend,
            top1_diff=per_backend[d]["top1"] - per_backend[a]["top1"],
            top5_diff=per_backend[d]["top5"] - per_backend[a]["top5"],
            agreement=pct(total[2]),
            kl_mean=total[3] / count,
            kl_direction=f"KL({a} || {d})",
        )
    else:
        result.update(per_backend[backends[0]])
    result["is_main"] = ranks.is_main
    return result


def evaluate(
    model_name: str,
    checkpoint,
    data=None,
    *,
    batch_size: int = 64,
    workers: int | None = None,
    backend: str = "auto",
    limit: int | None = None,
    labels=None,
    devkit=None,
    img_size: int | None = None,
    crop_pct: float | None = None,
    device: str | None = None,
    model_kwargs: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Top-1/top-5 (%) of `model_name` with `checkpoint` on `data` (default $NATBENCH_IMAGENET).

    Runs under torchrun too: each rank evaluates its share and every rank gets the summed result
    (`is_main` is True on rank 0). See `natbench accuracy --help` for the arguments.
    """
    return _run(
        model_name,
        checkpoint,
        [backend],
        data,
        batch_size=batch_size,
        workers=workers,
        limit=limit,
        labels=labels,
        devkit=devkit,
        img_size=img_size,
        crop_pct=crop_pct,
        device=device,
        model_kwargs=model_kwargs,
        progress=progress,
    )


def compare_backends(
    model_name: str,
    checkpoint,
    data=None,
    backends=("exact", "natten-drop-rpb"),
    *,
    batch_size: int = 64,
    workers: int | None = None,
    limit: int | None = None,
    labels=None,
    devkit=None,
    img_size: int | None = None,
    crop_pct: float | None = None,
    device: str | None = None,
    model_kwargs: dict | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The same weights on two backends over the same images: each one's top-1/top-5, their difference
    (second - first), prediction agreement (% same argmax) and mean KL(first || second) of the softmaxes."""
    backends = list(backends)
    if len(backends) != 2 or backends[0] == backends[1]:
        raise ValueError(f"compare two different backends, e.g. exact,natten-drop-rpb; got {backends}")
    if not is_na_model(model_name):
        raise ValueError(
            f"{model_name} has no neighborhood attention; compare backends of a nat_* or dinat_* model"
        )
    return _run(
        model_name,
        checkpoint,
        backends,
        data,
        batch_size=batch_size,
        workers=workers,
        limit=limit,
        labels=labels,
        devkit=devkit,
        img_size=img_size,
        crop_pct=crop_pct,
        device=device,
        model_kwargs=model_kwargs,
        progress=progress,
    )
