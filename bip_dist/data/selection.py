"""The selection split (`data.holdout`) and the training subset (`data.subset`) of the training file.

Settings must not be chosen on the test images, so part of the training images can be held out and
evaluated beside `val`. Both choices are stratified by class and drawn from `data.holdout_seed` only: every
method, run seed and world size of a sweep trains on, and is selected on, the same images. The held-out
images are chosen first, from their own generator, so `subset` never changes which images are held out.

The loaders use the result as index lists into the training file (TrainOrder / EvalOrder `indices`), so
every format selects the same way without rewriting any file.
"""

import numpy as np


def _quotas(counts, total):
    """Per-class shares of `total` proportional to `counts` (largest remainders; ties to the lower class)."""
    exact = counts * (total / counts.sum())
    q = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - q), kind="stable")
    q[order[:total - q.sum()]] += 1
    return q


def stratified_pick(labels, pool, count, rng):
    """`count` of the indices `pool` (into `labels`), each class contributing in proportion to its share
    of the pool, drawn uniformly by `rng`; returns (picked, rest), both sorted."""
    pool = np.sort(np.asarray(pool, dtype=np.int64))
    classes, inverse, counts = np.unique(labels[pool], return_inverse=True, return_counts=True)
    picked = []
    for c, q in enumerate(_quotas(counts, count)):
        members = pool[inverse == c]
        picked.append(rng.permutation(members)[:q])
    picked = np.sort(np.concatenate(picked)) if picked else np.zeros(0, np.int64)
    return picked, np.setdiff1d(pool, picked, assume_unique=True)


def split_train(labels, holdout, subset, seed, where):
    """(train indices, holdout indices) of a training file with `labels`; `where` names it in errors."""
    labels = np.asarray(labels, dtype=np.int64)
    n = len(labels)
    if holdout >= n:
        raise ValueError(f"data.holdout = {holdout} leaves no training images: {where} holds {n}")
    hold, rest = stratified_pick(labels, np.arange(n), holdout, np.random.default_rng([seed, 0]))
    if subset:
        if subset > len(rest):
            raise ValueError(f"data.subset = {subset} exceeds the {len(rest)} training images of {where} "
                             f"left after data.holdout = {holdout}")
        rest, _ = stratified_pick(labels, rest, subset, np.random.default_rng([seed, 1]))
    return rest, hold


def lmdb_labels(path):
    """Every record's label of a data_prep LMDB, reading only the record headers."""
    from bip_dist.data.files import open_lmdb
    from bip_dist.data.records import HEADER, read_meta, record_key

    env = open_lmdb(path)
    try:
        with env.begin(buffers=True) as txn:
            count = read_meta(txn)["count"]
            return np.array([HEADER.unpack_from(txn.get(record_key(i)))[1] for i in range(count)], np.int64)
    finally:
        env.close()


def ffcv_labels(path):
    """Every sample's label of a .beton (its label field's metadata; no image is read)."""
    from ffcv.reader import Reader

    return np.asarray(Reader(str(path)).metadata["f1"], dtype=np.int64).reshape(-1)


def train_labels(fmt, path, dataset=None):
    """Labels of the training file `path` in format `fmt`; `dataset` is the loaded training dataset
    (memory: its array; folder: the SampleGuard-wrapped ImageFolder with its targets)."""
    if fmt == "memory":
        return dataset.y.numpy()
    if fmt == "folder":
        return np.asarray(dataset.dataset.targets, dtype=np.int64)
    if fmt == "lmdb":
        return lmdb_labels(path)
    return ffcv_labels(path)
