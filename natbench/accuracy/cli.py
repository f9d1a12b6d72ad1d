"""`natbench accuracy`: top-1/top-5 of a checkpoint with the papers' recipe, alone or on two backends."""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import sys
from datetime import UTC, datetime
from typing import Any

EPILOG = """\
data layouts:
  DIR/<class>/*.JPEG            ImageFolder: sorted class-folder names are the label indices (ImageNet: wnids)
  DIR/ILSVRC2012_val_*.JPEG     flat ILSVRC2012 validation folder, with --devkit ILSVRC2012_devkit_t12
                                (data/meta.mat maps the ground truth's 1-based ILSVRC ids to sorted wnids)
  DIR/*.JPEG + --labels FILE    any flat folder; FILE has `filename label` per line, 0-based labels
unreadable images are reported (corrupt, corrupt_files) and excluded from count and the top-1/top-5 denominators.
distributed: torchrun --nproc-per-node N -m natbench accuracy ... (gloo on CPU, nccl on GPU, env:// rendezvous);
  each image is evaluated once (rank r takes images r::N) and rank 0 prints the summed result.
"""


def _kwarg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("--model", required=True, help="create_model name, e.g. nat_tiny")
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="HF directory (its config.json wins), original .pth, or hub id in the local cache; "
        "'none' = random init (for tests only: chance accuracy)",
    )
    parser.add_argument(
        "--data", default=None, help="validation images (default: $NATBENCH_IMAGENET); see data layouts below"
    )
    parser.add_argument("--labels", default=None, help="`filename label` file for a flat image folder")
    parser.add_argument(
        "--devkit", default=None, help="ILSVRC2012_devkit_t12 folder for ILSVRC2012_val_*.JPEG"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="data loader processes (default: 4, at most the usable cores)",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        help="NA backend: auto (= exact: the model's path with RPB), tiled, flex, reference, or "
        "natten-drop-rpb (natten's kernels, RPB dropped: changes logits)",
    )
    parser.add_argument(
        "--compare-backends",
        default=None,
        metavar="A,B",
        help="run the same weights on two backends, e.g. exact,natten-drop-rpb: top-1/top-5 of "
        "each, difference, prediction agreement and mean KL(A || B). natten's CPU path is quadratic in "
        "tokens: keep --batch-size small there",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="evaluate N images spread evenly over the data"
    )
    parser.add_argument(
        "--img-size",
        type=int,
        default=None,
        help="override the crop size (the papers use 224; smaller only for quick checks)",
    )
    parser.add_argument(
        "--crop-pct", type=float, default=None, help="override the crop fraction (papers: 0.875)"
    )
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument(
        "--model-kwargs",
        nargs="*",
        type=_kwarg,
        default=[],
        metavar="KEY=VALUE",
        help="create_model overrides, e.g. num_labels=10 depths=[1,1,1,1]",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--out", default=None, help="append the result row(s) to DIR/rows/<host>-<pid>.jsonl")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _case_id(args: argparse.Namespace, backend: str) -> str:
    key = {
        k: getattr(args, k)
        for k in (
            "model",
            "checkpoint",
            "data",
            "labels",
            "devkit",
            "limit",
            "img_size",
            "crop_pct",
            "model_kwargs",
        )
    }
    key["backend"] = backend
    return "accuracy-" + hashlib.sha1(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _device_name(env: dict[str, Any], device: str) -> str | None:
    if device == "cuda" and env.get("gpu"):
        return env["gpu"].get("name")
    return (env.get("cpu") or {}).get("model")


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def checkpoint_sha256(checkpoint: str | None) -> str | None:
    """sha256 of the weights evaluated: the checkpoint file, or the weights file of an HF directory;
    None for random init or a hub id (then the id is the record)."""
    import hashlib
    from pathlib import Path

    if not checkpoint or checkpoint == "none":
        return None
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        named = [path / n for n in WEIGHT_FILES if (path / n).is_file()]
        named = named or sorted(p for p in path.iterdir() if p.suffix in WEIGHT_SUFFIXES and p.is_file())
        if not named:
            return None
        path = named[0]
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def recipe(args: argparse.Namespace, result: dict[str, Any]) -> dict[str, Any]:
    """The columns that say how an accuracy number was made: eval transform, weights, dataset."""
    cfg = result["data_config"]
    return {
        "crop_pct": cfg.get("crop_pct"),
        "interpolation": cfg.get("interpolation"),
        "checkpoint_sha256": checkpoint_sha256(result["checkpoint"]),
        "dataset": result["data"] if args.data is None else None,  # from NATBENCH_IMAGENET
    }


def _rows(args: argparse.Namespace, result: dict[str, Any]) -> list[dict[str, Any]]:
    per_backend = result.get("backends") or {result["backend"]: result}
    ref = next(iter(per_backend))
    made = recipe(args, result)
    rows = []
    for name, r in per_backend.items():
        row = {
            "case_id": _case_id(args, name),
            "status": "ok",
            "kind": "accuracy",
            "target": result["model"],
            "backend": name,
            "kernel": r["kernel"],
            "device": result["device"],
            "device_name": _device_name(result["env"], result["device"]),
            "dtype": result["dtype"],
            "mode": "inference",
            "batch": result["batch_size"],
            "resolution": result["data_config"]["input_size"][-1],
            "throughput": r["images_per_s"],
            "top1": r["top1"],
            "top5": r["top5"],
            "count": result["count"],
            "checkpoint": result["checkpoint"],
            **made,
            "timestamp": datetime.now(UTC).isoformat(),
            "env": result["env"],
        }
        if "agreement" in result and name != ref:
            row.update(agreement=result["agreement"], kl_div=result["kl_mean"])
        rows.append(row)
    return rows


def _failure_rows(args: argparse.Namespace, exc: Exception, backends: list[str]) -> list[dict[str, Any]]:
    from natbench.accuracy.data import DATA_ENV
    from natbench.env import collect

    no_data = args.data is None and isinstance(exc, FileNotFoundError) and DATA_ENV in str(exc)
    return [
        {
            "case_id": _case_id(args, b),
            "status": "skipped" if no_data else "error",
            "error": f"{type(exc).__name__}: {exc}",
            "kind": "accuracy",
            "target": args.model,
            "backend": b,
            "checkpoint": args.checkpoint,
            "timestamp": datetime.now(UTC).isoformat(),
            "env": collect(),
        }
        for b in backends
    ]


def _print_text(result: dict[str, Any]) -> None:
    head = [
        ("model", result["model"]),
        ("checkpoint", result["checkpoint"]),
        ("data", f"{result['data']} ({result['data_source']}, {result['num_classes']} classes)"),
        (
            "images",
            f"{result['count']} evaluated of {result['dataset_size']}"
            + (f" (--limit {result['limit']})" if result["limit"] else "")
            + f", {result['world_size']} process(es) on {result['device']}",
        ),
        ("recipe", ", ".join(f"{k}={v}" for k, v in result["data_config"].items())),
    ]
    per_backend = result.get("backends") or {result["backend"]: result}
    for name, r in per_backend.items():
        rate = f"{r['images_per_s']:.1f} img/s (forward, incl. warm-up)" if r["images_per_s"] else "n/a"
        head.append(
            (
                f"[{name}]",
                f"top-1 {r['top1']:.3f} %  top-{result['topk']} {r['top5']:.3f} %  "
                f"{rate}  kernel {r['kernel']}",
            )
        )
    if "agreement" in result:
        head += [
            ("top-1 diff", f"{result['top1_diff']:+.3f} points (second - first)"),
            ("top-5 diff", f"{result['top5_diff']:+.3f} points"),
            ("agreement", f"{result['agreement']:.3f} % same top-1 prediction"),
            ("mean KL", f"{result['kl_mean']:.6g} nats, {result['kl_direction']}"),
        ]
    head.append(("corrupt", f"{result['corrupt']} ({result['corrupt_policy']})"))
    width = max(len(k) for k, _ in head)
    for k, v in head:
        print(f"{k:<{width}}  {v}")
    for c in result["corrupt_files"][:20]:
        print(f"  unreadable: {c['path']}: {c['error']}")
    if len(result["corrupt_files"]) > 20:
        print(f"  ... and {len(result['corrupt_files']) - 20} more (see --json)")
    for note in result["notes"]:
        print(f"note: {note}")


def main(args: argparse.Namespace) -> int:
    from natbench.accuracy.evaluate import compare_backends, evaluate
    from natbench.results import append_row

    common = dict(
        batch_size=args.batch_size,
        workers=args.workers,
        limit=args.limit,
        labels=args.labels,
        devkit=args.devkit,
        img_size=args.img_size,
        crop_pct=args.crop_pct,
        device=args.device,
        model_kwargs=dict(args.model_kwargs),
        progress=not args.no_progress,
    )
    compare = [b.strip() for b in args.compare_backends.split(",")] if args.compare_backends else None
    try:
        if compare:
            result = compare_backends(args.model, args.checkpoint, args.data, compare, **common)
        else:
            result = evaluate(args.model, args.checkpoint, args.data, backend=args.backend, **common)
    except (ValueError, KeyError, FileNotFoundError, NotADirectoryError) as exc:
        import os

        if os.environ.get("RANK", "0") == "0":
            print(f"natbench accuracy: error: {exc}", file=sys.stderr)
            if args.out:
                for row in _failure_rows(args, exc, compare or [args.backend]):
                    append_row(args.out, row)
        return 2
    if not result.pop("is_main"):
        return 0
    if args.out:
        for row in _rows(args, result):
            append_row(args.out, row)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        _print_text(result)
    return 0
