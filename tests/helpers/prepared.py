"""Prepared data files (data_prep's LMDB and .npz formats) of random images, written by data_prep's own
writers, and a reader of an LMDB file's raw records."""

import os

import lmdb
import numpy as np

from data_prep.lmdb_writer import write_lmdb
from data_prep.memory_writer import write_npz
from data_prep.sources import Source

CLASSES = ["a", "b", "c"]


def image_source(n, classes=CLASSES, seed=0):
    """n random 32x32 RGB images labelled round-robin (noise: each JPEG spans a few KB, so files have many
    pages)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Source("fake", "fake", list(classes), [i % len(classes) for i in range(n)], None, x)


def make_lmdb(path, n=40):
    write_lmdb(image_source(n), str(path), max_side=0, quality=90, workers=0)
    return str(path)


def make_npz(path, n=24):
    write_npz(image_source(n), str(path))
    return str(path)


def make_digits_root(root, n_train=64, n_val=16):
    """train.npz / val.npz of random images in ten classes: a stand-in for the prepared digits set."""
    os.makedirs(root, exist_ok=True)
    classes = [str(c) for c in range(10)]
    for split, n, seed in (("train", n_train, 0), ("val", n_val, 1)):
        write_npz(image_source(n, classes, seed), os.path.join(root, f"{split}.npz"))
    return str(root)


def lmdb_records(path):
    """{key: value} of every record of an LMDB file."""
    env = lmdb.open(str(path), subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        out = {bytes(k): bytes(v) for k, v in txn.cursor()}
    env.close()
    return out
