"""Readers of the real source layouts. Each returns a Source: the ordered list of images with labels.

Class indices follow the sorted wnids / folder names (CIFAR: its official, already alphabetical, names),
so the same image gets the same label in every format. Image order is sorted by relative path, so two
runs over the same tree list the same items in the same order (resume and verify rely on it).
"""

import csv
import hashlib
import os
import sys
from dataclasses import dataclass, field

import numpy as np

from bip_dist.data import folders

EXTS = folders.EXTS


class SourceError(ValueError):
    """A malformed source layout; the message is one line naming the file and the offending value."""


@dataclass
class Source:
    """Images of one split: `refs` are paths relative to `root`, or None when `arrays` holds the pixels."""
    name: str
    root: str
    classes: list
    labels: list
    refs: list = None
    arrays: np.ndarray = field(default=None, repr=False)

    def __len__(self):
        return len(self.labels)

    def task_src(self, i):
        """What a worker decodes for item i: an absolute path or an HWC uint8 array."""
        return self.arrays[i] if self.arrays is not None else os.path.join(self.root, self.refs[i])

    def describe(self, i):
        """Human name of item i for error messages and reports."""
        return f"{self.root}[{i}]" if self.refs is None else os.path.join(self.root, self.refs[i])

    def digest(self):
        """sha256 over (name, label) of every item (and the pixels of array sources), in order."""
        h = hashlib.sha256("\n".join(self.classes).encode())
        for i, label in enumerate(self.labels):
            h.update(f"{self.refs[i] if self.refs else i}\t{label}\n".encode())
        if self.arrays is not None:
            h.update(np.ascontiguousarray(self.arrays).tobytes())
        return h.hexdigest()


def _require_dir(path, what):
    if not os.path.isdir(path):
        raise SourceError(f"{path}: {what} folder not found")


def class_folders(root, classes=None, name=None):
    """Any `root/<class>/**/<image>` tree; classes = sorted sub-folder names unless given. Listed by the
    walk training's data.format=folder uses (bip_dist.data.folders): directory links are not followed."""
    try:
        paths, labels, classes, links = folders.list_images(root, classes)
    except folders.FolderError as e:
        raise SourceError(str(e)) from None
    note = folders.links_note(root, links)
    if note:
        print(f"[prep] warning: {note}", file=sys.stderr, flush=True)
    if not paths:
        raise SourceError(f"{root}: no .jpeg/.jpg/.png images in its class folders")
    return Source(name or root, root, classes, labels, [os.path.relpath(p, root) for p in paths])


def split_folders(src, split):
    """`src/<split>/<class>/...` labelled by the class folders of `src/train`, for every split: a split
    listing its own folders would shift every label past a class it lacks."""
    train = os.path.join(src, "train")
    if split != "train" and not os.path.isdir(train):
        raise SourceError(f"{train}: not found; the class list of every split is taken from train/")
    classes = folders.class_names(train) if split != "train" else None
    return class_folders(os.path.join(src, split), classes, f"folder/{split}")


def _find_file(dirs, fname):
    for d in dirs:
        p = os.path.join(d, fname)
        if os.path.isfile(p):
            return p
    return None


def _index_by_stem(folder):
    """{file stem: file name} of the images directly in `folder` (any extension case)."""
    return {os.path.splitext(f)[0]: f for f in sorted(os.listdir(folder)) if f.lower().endswith(EXTS)}


def imagenet(src, split):
    """ILSVRC-2012: train/<wnid>/*.JPEG; val/ in class folders, or flat with LOC_val_solution.csv
    (rows `ImageId,PredictionString`, the wnid first in PredictionString)."""
    train_dir, val_dir = os.path.join(src, "train"), os.path.join(src, "val")
    _require_dir(train_dir, "ImageNet train")
    classes = sorted(d for d in os.listdir(train_dir) if os.path.isdir(os.path.join(train_dir, d)))
    if split == "train":
        return class_folders(train_dir, classes, "imagenet/train")
    _require_dir(val_dir, "ImageNet val")
    if any(os.path.isdir(os.path.join(val_dir, d)) for d in os.listdir(val_dir)):
        return class_folders(val_dir, classes, "imagenet/val")
    csv_path = _find_file([src, val_dir, os.path.dirname(os.path.abspath(src))], "LOC_val_solution.csv")
    if csv_path is None:
        raise SourceError(f"{val_dir}: flat val/ needs LOC_val_solution.csv in {src} or {val_dir}")
    files, index = _index_by_stem(val_dir), {c: i for i, c in enumerate(classes)}
    refs, labels = [], []
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or rows[0][:1] != ["ImageId"]:
        raise SourceError(f"{csv_path}: header must start with ImageId, got {rows[:1]!r}")
    for n, row in enumerate(rows[1:], start=2):
        if len(row) < 2 or not row[1].split():
            raise SourceError(f"{csv_path}:{n}: expected 'ImageId,PredictionString', got {row!r}")
        image_id, wnid = row[0], row[1].split()[0]
        if wnid not in index:
            raise SourceError(f"{csv_path}:{n}: wnid {wnid!r} is not a train class")
        if image_id not in files:
            raise SourceError(f"{csv_path}:{n}: image {image_id!r} not found in {val_dir}")
        refs.append(files.pop(image_id))
        labels.append(index[wnid])
    if files:
        raise SourceError(f"{os.path.join(val_dir, sorted(files.values())[0])}: not listed in {csv_path}")
    order = sorted(range(len(refs)), key=refs.__getitem__)
    return Source("imagenet/val", val_dir, classes, [labels[i] for i in order], [refs[i] for i in order])


def tiny_imagenet(src, split):
    """Tiny-ImageNet-200: wnids.txt, train/<wnid>/images/*.JPEG, val/images + val_annotations.txt."""
    wnids_path = os.path.join(src, "wnids.txt")
    if not os.path.isfile(wnids_path):
        raise SourceError(f"{wnids_path}: not found (is {src} a tiny-imagenet-200 folder?)")
    with open(wnids_path) as f:
        classes = sorted({ln.strip() for ln in f if ln.strip()})
    if split == "train":
        return class_folders(os.path.join(src, "train"), classes, "tiny_imagenet/train")
    val_dir = os.path.join(src, "val")
    ann = os.path.join(val_dir, "val_annotations.txt")
    if not os.path.isfile(ann):
        return class_folders(val_dir, classes, "tiny_imagenet/val")  # already re-sorted into folders
    index, refs, labels = {c: i for i, c in enumerate(classes)}, [], []
    with open(ann) as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 2:
                raise SourceError(f"{ann}:{n}: expected 'file<TAB>wnid<TAB>...', got {line.strip()!r}")
            if parts[1] not in index:
                raise SourceError(f"{ann}:{n}: wnid {parts[1]!r} is not in wnids.txt")
            rel = os.path.join("images", parts[0])
            if not os.path.isfile(os.path.join(val_dir, rel)):
                raise SourceError(f"{ann}:{n}: image {os.path.join(val_dir, rel)} not found")
            refs.append(rel)
            labels.append(index[parts[1]])
    order = sorted(range(len(refs)), key=refs.__getitem__)
    return Source("tiny_imagenet/val", val_dir, classes, [labels[i] for i in order], [refs[i] for i in order])
