"""data.holdout / data.subset: stratified, seeded by holdout_seed alone, disjoint from training, sharded
across ranks like val, and the same through every format's index lists."""

import os

import numpy as np
import pytest

from bip_dist.data import DataConfig, build_loaders
from bip_dist.data.selection import lmdb_labels, split_train
from data_prep.lmdb_writer import write_lmdb
from data_prep.memory_writer import write_npz
from data_prep.sources import Source

# Unequal classes: 40, 30, 20 and 10 images.
LABELS = np.repeat(np.arange(4), [40, 30, 20, 10])


def test_split_is_stratified_disjoint_and_seeded():
    train, hold = split_train(LABELS, 20, 0, seed=0, where="f")
    assert np.bincount(LABELS[hold]).tolist() == [8, 6, 4, 2]  # in proportion to the classes
    assert len(np.intersect1d(train, hold)) == 0 and len(train) + len(hold) == len(LABELS)
    again, hold_again = split_train(LABELS, 20, 0, seed=0, where="f")
    assert np.array_equal(hold, hold_again) and np.array_equal(train, again)
    assert not np.array_equal(hold, split_train(LABELS, 20, 0, seed=1, where="f")[1])


def test_subset_leaves_the_holdout_unchanged():
    _, hold = split_train(LABELS, 20, 0, seed=3, where="f")
    sub, hold_sub = split_train(LABELS, 20, 40, seed=3, where="f")
    assert np.array_equal(hold, hold_sub)
    assert len(sub) == 40 and np.bincount(LABELS[sub]).tolist() == [16, 12, 8, 4]
    assert len(np.intersect1d(sub, hold)) == 0


def test_too_large_one_line():
    with pytest.raises(ValueError, match=r"data.holdout = 100 leaves no training images: f holds 100"):
        split_train(LABELS, 100, 0, seed=0, where="f")
    with pytest.raises(ValueError, match=r"data.subset = 90 exceeds the 80 training images of f left after "
                                         r"data.holdout = 20"):
        split_train(LABELS, 20, 90, seed=0, where="f")


def _source(n=40):
    """n 8x8 images whose pixel value is the image's index, labels cycling over 4 classes."""
    x = np.repeat(np.arange(n, dtype=np.uint8), 8 * 8 * 3).reshape(n, 8, 8, 3)
    return Source("idx", "idx", ["a", "b", "c", "d"], [i % 4 for i in range(n)], None, x)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("hold")
    for split in ("train", "val"):
        write_npz(_source(), os.path.join(d, f"{split}.npz"))
    write_lmdb(_source(), os.path.join(d, "train_lmdb_ms0_q100.lmdb"), max_side=0, quality=100, workers=0)
    write_lmdb(_source(), os.path.join(d, "val_lmdb_ms0_q100.lmdb"), max_side=0, quality=100, workers=0)
    return str(d)


def _ids(batches):
    """The image indices (pixel values; batches arrive scaled to [0, 1]) of every image of `batches`."""
    return sorted(int(round(float(x[i].mean()) * 255)) for x, _ in batches for i in range(len(x)))


def _cfg(root, fmt="memory", **kw):
    base = dict(dataset="digits", format=fmt, root=root, batch_size=4, workers=0, image_size=8, normalize=False,
                augment=False, holdout=8)
    return DataConfig(**{**base, **kw})


# ffcv takes the same index lists (its order's flat_order); building and compiling a .beton costs about a
# minute on 2 cores, so it is left to test_loaders' formats.
@pytest.mark.parametrize("fmt", ["memory", "lmdb"])
def test_loaders_train_never_sees_the_holdout(root, fmt):
    want_train, want_hold = split_train(np.arange(40) % 4, 8, 0, seed=0, where="x")
    ld = build_loaders(_cfg(root, fmt))
    assert ld.train_size == 32 and ld.holdout_size == 8
    assert _ids(ld.holdout) == want_hold.tolist()
    ld.train.set_epoch(0)
    seen = _ids(ld.train)
    assert seen == want_train.tolist()  # 32 images, batch 4: every training image once, no held-out one


def test_lmdb_labels_from_headers(root):
    assert lmdb_labels(os.path.join(root, "train_lmdb_ms0_q100.lmdb")).tolist() == [i % 4 for i in range(40)]


def test_two_ranks_share_the_holdout_like_val(root):
    _, want_hold = split_train(np.arange(40) % 4, 8, 0, seed=0, where="x")
    parts = [build_loaders(_cfg(root), rank=r, world_size=2, seed=5) for r in (0, 1)]
    ids = [_ids(p.holdout) for p in parts]
    assert sorted(ids[0] + ids[1]) == want_hold.tolist() and not set(ids[0]) & set(ids[1])
    train = []
    for p in parts:
        p.train.set_epoch(0)
        train += _ids(p.train)
    assert not set(train) & set(want_hold.tolist()) and len(set(train)) == 32


def test_subset_and_no_holdout(root):
    ld = build_loaders(_cfg(root, holdout=0, subset=12))
    assert ld.holdout is None and ld.train_size == 12
    ld.train.set_epoch(0)
    assert len(_ids(ld.train)) == 12
    assert build_loaders(_cfg(root, holdout=0)).holdout is None
