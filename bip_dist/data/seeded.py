"""Per-sample augmentation seeds for DataLoader-based formats (LMDB, image folder).

Left to worker RNGs, a sample's random crop and flip depend on which worker decoded it and on how many
samples that worker drew before, so a run resumed mid-epoch (or run with another worker count) sees other
augmentations. Here the order hands every sample a seed that is a function of (run seed, epoch, stream,
index) only, and the dataset draws the sample's augmentation under that seed: a resumed run replays the
uninterrupted one exactly, with any number of workers and ranks.
"""

import numpy as np
import torch

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _mix(x):
    """splitmix64 finaliser, vectorised: consecutive inputs give unrelated 64-bit outputs."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9) & _M
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB) & _M
        return x ^ (x >> np.uint64(31))


def sample_seeds(seed, epoch, stream, indices):
    """One seed in [0, 2**63) per index."""
    with np.errstate(over="ignore"):
        key = _mix(_mix(_mix(np.uint64(seed)) + np.uint64(epoch)) + np.uint64(stream))
        s = _mix(key + np.asarray(indices, dtype=np.uint64))
    return (s >> np.uint64(1)).astype(np.int64)


class SeededOrder:
    """Batch sampler yielding [(index, seed), ...] for the batches of a TrainOrder (same length, epoch,
    start step); each step's entries are `streams` consecutive runs of equal length."""

    def __init__(self, order, seed):
        self.order, self.seed = order, seed

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        epoch, streams = self.order.epoch, self.order.streams
        for batch in self.order:
            per = len(batch) // streams
            seeds = np.concatenate([sample_seeds(self.seed, epoch, s, batch[s * per:(s + 1) * per])
                                    for s in range(streams)])
            yield list(zip(batch, seeds.tolist()))


class SeededDataset(torch.utils.data.Dataset):
    """Wraps a map-style dataset: an (index, seed) key draws that item's random transforms under `seed`
    without touching the caller's RNG; a plain index reads the item as is (evaluation)."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.classes = getattr(dataset, "classes", [])

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
