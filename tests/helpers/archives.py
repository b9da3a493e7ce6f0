"""Fake source archives in the real layouts, with the quirks real archives have. Every image is one
solid colour, unique per image, so tests can recognise the same image across formats by its colour."""

import csv
import io
import os
import pickle
import tarfile

import numpy as np
from PIL import Image

WNIDS = ["n01440764", "n01443537", "n01484850"]


def color(k):
    """A colour far from every other image's (JPEG shifts solid colours by a few levels at most)."""
    return (40 * (k % 6) + 20, 40 * ((k // 6) % 6) + 20, 40 * ((k // 36) % 6) + 20)


def save(path, k, size=(48, 36), mode="RGB", fmt="JPEG"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = Image.new("RGB", size, color(k))
    if mode == "CMYK":
        im = im.convert("CMYK")
    elif mode == "L":
        im = Image.new("L", size, color(k)[0])
    im.save(path, format=fmt, quality=95)


def make_imagenet(root, per_class=4, val_per_class=2, flat_val=True):
    """train/<wnid>/*.JPEG with a CMYK JPEG, a grayscale JPEG, a PNG named .JPEG, .jpeg and .JPG names;
    val/ flat with LOC_val_solution.csv (or in class folders)."""
    k = 0
    quirks = {(0, 1): dict(mode="CMYK"), (1, 2): dict(mode="L"), (2, 0): dict(fmt="PNG")}
    for c, w in enumerate(WNIDS):
        for j in range(per_class):
            ext = {(1, 0): ".jpeg", (2, 3): ".JPG"}.get((c, j), ".JPEG")
            save(os.path.join(root, "train", w, f"{w}_{j}{ext}"), k, **quirks.get((c, j), {}))
            k += 1
    rows = [("ImageId", "PredictionString")]
    for c, w in enumerate(WNIDS):
        for j in range(val_per_class):
            name = f"ILSVRC2012_val_{c * val_per_class + j + 1:08d}"
            sub = "" if flat_val else w
            save(os.path.join(root, "val", sub, name + ".JPEG"), 100 + k)
            rows.append((name, f"{w} 1 2 30 40 {w} 5 6 7 8"))
            k += 1
    if flat_val:
        with open(os.path.join(root, "LOC_val_solution.csv"), "w", newline="") as f:
            csv.writer(f).writerows(rows)
    return root


def make_tiny(root):
    """tiny-imagenet-200 layout: wnids.txt (unsorted), train/<wnid>/images, val/images + annotations."""
    os.makedirs(root)
    with open(os.path.join(root, "wnids.txt"), "w") as f:
        f.write("\n".join(reversed(WNIDS)) + "\n")
    k = 0
    for w in WNIDS:
        for j in range(2):
            save(os.path.join(root, "train", w, "images", f"{w}_{j}.JPEG"), k, size=(16, 16))
            k += 1
    lines = []
    for j, w in enumerate([WNIDS[2], WNIDS[0], WNIDS[1], WNIDS[0]]):
        save(os.path.join(root, "val", "images", f"val_{j}.JPEG"), 50 + j, size=(16, 16))
        lines.append(f"val_{j}.JPEG\t{w}\t0\t0\t15\t15")
    with open(os.path.join(root, "val", "val_annotations.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return root


def _pickle(obj):
    return pickle.dumps(obj, protocol=2)


def make_cifar10(root, n=6, archive=True):
    """cifar-10-batches-py pickles (numpy arrays inside), as the .tar.gz or extracted."""
    rng = np.random.default_rng(0)
    files = {"batches.meta": _pickle({b"label_names": [n.encode() for n in
                                                        ["airplane", "automobile", "bird", "cat", "deer", "dog",
                                                         "frog", "horse", "ship", "truck"]]})}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        files[name] = _pickle({b"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                               b"labels": rng.integers(0, 10, n).tolist()})
    os.makedirs(root, exist_ok=True)
    if archive:
        with tarfile.open(os.path.join(root, "cifar-10-python.tar.gz"), "w:gz") as tar:
            for name, data in files.items():
                info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    else:
        os.makedirs(os.path.join(root, "cifar-10-batches-py"))
        for name, data in files.items():
            with open(os.path.join(root, "cifar-10-batches-py", name), "wb") as f:
                f.write(data)
    return root
