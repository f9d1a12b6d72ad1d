"""Validation images and their labels: an ImageFolder tree, or ILSVRC2012's flat validation folder.

Label indices follow the class order every ImageNet model uses: sorted class-folder names (torchvision's
ImageFolder), which for ImageNet are the sorted WordNet ids.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS, ImageFolder

DATA_ENV = "NATBENCH_IMAGENET"
ILSVRC_VAL = re.compile(r"^ILSVRC2012_val_(\d{8})\.jpe?g$", re.IGNORECASE)
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"


@dataclass
class Samples:
    """(path, label) pairs in a fixed order, and where they came from."""

    items: list[tuple[str, int]]
    num_classes: int
    source: str  # "imagefolder", "ilsvrc-devkit" or "labels-file"
    root: str = ""
    classes: list[str] | None = None
    notes: list[str] = field(default_factory=list)


def resolve_data_dir(data: str | os.PathLike | None) -> Path:
    """--data, else $NATBENCH_IMAGENET; one clear error when neither names an existing directory."""
    if data is None or str(data) == "":
        data = os.environ.get(DATA_ENV) or None
        if data is None:
            raise FileNotFoundError(
                f"no dataset given: pass --data DIR (an ImageFolder tree such as ImageNet's val/<wnid>/*.JPEG) "
                f"or set {DATA_ENV} to that directory"
            )
    path = Path(data).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"dataset directory {path} does not exist; check --data / {DATA_ENV}")
    if not path.is_dir():
        raise NotADirectoryError(f"dataset path {path} is not a directory; --data takes a folder of images")
    return path


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def load_samples(
    data: str | os.PathLike | None,
    labels: str | os.PathLike | None = None,
    devkit: str | os.PathLike | None = None,
) -> Samples:
    """The images to evaluate and their 0-based labels.

    data: an ImageFolder tree (DIR/<class>/<image>), or a flat folder of images with `labels` (a text file,
      `filename label` per line, 0-based labels in the model's class order) or `devkit` (ILSVRC2012_devkit_t12,
      whose data/meta.mat maps the ground truth's ILSVRC2012 ids to the sorted-WordNet-id order).
    """
    root = resolve_data_dir(data)
    if labels is not None and devkit is not None:
        raise ValueError("pass either --labels or --devkit, not both")
    samples = _discover(root, labels, devkit)
    samples.root = str(root)
    return samples


def _discover(root: Path, labels, devkit) -> Samples:
    entries = sorted(os.scandir(root), key=lambda e: e.name)
    class_dirs = [e for e in entries if e.is_dir()]  # as ImageFolder: hidden folders are classes too
    flat_images = [e.name for e in entries if e.is_file() and _is_image(e.name)]
    if labels is not None or devkit is not None:
        if not flat_images:
            raise FileNotFoundError(
                f"{root} holds no image files ({', '.join(IMG_EXTENSIONS)}) for "
                f"--labels/--devkit; these options take a flat folder of images"
            )
        if labels is not None:
            return _from_labels_file(root, flat_images, Path(labels))
        return _from_devkit(root, flat_images, Path(devkit))
    if class_dirs:
        return _from_image_folder(root, class_dirs)
    if flat_images:
        hint = (
            f"pass --devkit ILSVRC2012_devkit_t12 (maps its {GROUND_TRUTH} to class indices) or "
            if any(ILSVRC_VAL.match(n) for n in flat_images)
            else "pass "
        )
        raise ValueError(
            f"{root} is a flat folder of {len(flat_images)} images without class subfolders; {hint}"
            "--labels FILE (`filename label` per line, 0-based) or sort the images into DIR/<class>/ folders"
        )
    raise FileNotFoundError(f"{root} holds no images and no class folders; --data takes DIR/<class>/*.JPEG")


def _from_image_folder(root: Path, class_dirs: list[os.DirEntry]) -> Samples:
    names = {d.name for d in class_dirs}
    if {"train", "val"} <= names:
        raise ValueError(
            f"{root} looks like an ImageNet root (has train/ and val/); pass --data {root / 'val'}"
        )
    empty = [
        d.name
        for d in class_dirs
        if not any(_is_image(f) for _, _, fs in os.walk(d.path, followlinks=True) for f in fs)
    ]
    if empty:
        shown = ", ".join(empty[:10]) + (f" (+{len(empty) - 10} more)" if len(empty) > 10 else "")
        raise ValueError(
            f"{len(empty)} class folder(s) in {root} hold no images: {shown}. Every class folder is a label "
            "index (sorted names), so an empty one would shift the labels; remove it or add its images"
        )
    folder = ImageFolder(str(root), loader=_never_called)
    return Samples(
        items=[(p, int(t)) for p, t in folder.samples],
        num_classes=len(folder.classes),
        source="imagefolder",
        classes=list(folder.classes),
    )


def _never_called(path: str):
    raise RuntimeError("natbench loads images itself so that a corrupt file is reported, not raised")


def _from_labels_file(root: Path, images: list[str], labels: Path) -> Samples:
    if not labels.is_file():
        raise FileNotFoundError(f"labels file {labels} does not exist")
    wanted: dict[str, int] = {}
    for n, line in enumerate(labels.read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
            raise ValueError(
                f"{labels}:{n}: expected `filename label` with a 0-based integer label, got {line!r}"
            )
        wanted[Path(parts[0]).name] = int(parts[1])
    present = set(images)
    missing = sorted(set(wanted) - present)
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} image(s) listed in {labels} are not in {root}: {', '.join(missing[:5])}"
        )
    if not wanted:
        raise ValueError(f"labels file {labels} lists no images")
    items = [(str(root / name), wanted[name]) for name in images if name in wanted]
    notes = []
    if len(items) < len(images):
        notes.append(
            f"{len(images) - len(items)} image(s) in {root} have no label in {labels} and are skipped"
        )
    return Samples(items=items, num_classes=max(wanted.values()) + 1, source="labels-file", notes=notes)


def _devkit_ids_to_wnids(meta_mat: Path) -> dict[int, str]:
    import scipy.io

    synsets = scipy.io.loadmat(str(meta_mat), squeeze_me=True)["synsets"]
    leaves = synsets[synsets["num_children"] == 0]
    return {int(i): str(w) for i, w in zip(leaves["ILSVRC2012_ID"], leaves["WNID"])}


DEVKIT_ARCHIVE = "ILSVRC2012_devkit_t12.tar.gz"


def _torchvision_val_wnids(devkit: Path) -> tuple[list[str], list[str]] | None:
    """(every class's WordNet id, sorted; each validation image's WordNet id, image N at N-1) through
    torchvision.datasets.imagenet, when
    `devkit` is the devkit archive, a folder holding it, or a folder with the meta.bin torchvision made
    from it; None for an extracted devkit folder (data/meta.mat), which torchvision does not read."""
    from torchvision.datasets.imagenet import META_FILE, load_meta_file, parse_devkit_archive

    folder, archive = (devkit.parent, devkit.name) if devkit.is_file() else (devkit, DEVKIT_ARCHIVE)
    if not (folder / META_FILE).is_file():
        if not (folder / archive).is_file():
            return None
        parse_devkit_archive(str(folder), archive)  # checks the archive's md5, writes folder/meta.bin
    wnid_to_classes, val_wnids = load_meta_file(str(folder))
    return sorted(str(w) for w in wnid_to_classes), [str(w) for w in val_wnids]


def _from_devkit(root: Path, images: list[str], devkit: Path) -> Samples:
    parsed = _torchvision_val_wnids(devkit)
    if parsed is not None:
        wnids, val_wnids = parsed
        index = {w: i for i, w in enumerate(wnids)}
        items = []
        for name in images:
            number = _val_number(root, name)
            if not 1 <= number <= len(val_wnids):
                raise ValueError(
                    f"{name}: number {number} is outside the {len(val_wnids)} images of {devkit}"
                )
            items.append((str(root / name), index[val_wnids[number - 1]]))
        return Samples(items=items, num_classes=len(wnids), source="ilsvrc-devkit", classes=wnids)
    meta, truth = devkit / "data" / "meta.mat", devkit / "data" / GROUND_TRUTH
    for f in (meta, truth):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f} does not exist; --devkit takes {DEVKIT_ARCHIVE} (or its folder, or the meta.bin "
                "torchvision made from it) or the extracted ILSVRC2012_devkit_t12 folder"
            )
    id_to_wnid = _devkit_ids_to_wnids(meta)
    wnids = sorted(id_to_wnid.values())
    index = {w: i for i, w in enumerate(wnids)}
    truth_ids = [int(s) for s in truth.read_text().split()]
    items = []
    for name in images:
        number = _val_number(root, name)
        if not 1 <= number <= len(truth_ids):
            raise ValueError(f"{name}: number {number} is outside the {len(truth_ids)} lines of {truth}")
        ilsvrc_id = truth_ids[number - 1]
        if ilsvrc_id not in id_to_wnid:
            raise ValueError(
                f"{truth}: line {number} has ILSVRC2012 id {ilsvrc_id}, not a leaf class in {meta}"
            )
        items.append((str(root / name), index[id_to_wnid[ilsvrc_id]]))
    return Samples(items=items, num_classes=len(wnids), source="ilsvrc-devkit", classes=wnids)


def _val_number(root: Path, name: str) -> int:
    m = ILSVRC_VAL.match(name)
    if not m:
        raise ValueError(
            f"{root / name} is not named ILSVRC2012_val_NNNNNNNN.JPEG; --devkit labels images "
            "by their number, use --labels FILE for other names"
        )
    return int(m.group(1))


def even_subset(count: int, limit: int | None) -> list[int]:
    """`limit` indices spread evenly over `count` items (all of them if limit is None or >= count).

    ImageFolder order is class by class, so the first N images would be a few classes only.
    """
    if limit is None or limit >= count:
        return list(range(count))
    if limit < 1:
        raise ValueError(f"--limit must be >= 1, got {limit}")
    return [i * count // limit for i in range(limit)]
