"""Seeded, sharded, resumable batch orders for one or two training streams, and the evaluation shard.

BiP needs two independent batches per step (B_theta for the weights, B_m for the scores). Rather than two
loaders, one order draws two independent permutations per epoch and emits, for step i, the indices
perm1[i*b:(i+1)*b] + perm2[i*b:(i+1)*b]: one pipeline loads a batch of 2b that is split in halves.
"""

import math

import numpy as np


class TrainOrder:
    """Batches of indices for one rank; deterministic given (seed, epoch, rank, world_size).

    Each stream is a fresh permutation of all `n` indices (seeded by seed, epoch and stream number), cut
    into `world_size` equal contiguous shards, so ranks see disjoint samples of every stream. Shards drop
    the n % world_size remainder (a different remainder each epoch) so every rank runs the same number of
    steps, which collective training needs. An epoch has (n // world_size) // batch_size steps with
    drop_last (the reference BiP code's loaders keep the last partial batch; here it is dropped so that a
    step's batch size, and with it the meaning of the learning rate, never changes).

    `indices` (n of them) restricts the order to those dataset indices (data.holdout / data.subset): the
    permutations are drawn over positions 0..n-1 and mapped through it.
    """

    def __init__(self, n, batch_size, *, rank=0, world_size=1, seed=0, streams=1, drop_last=True,
                 shuffle=True, indices=None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank = {rank} must be in [0, world_size = {world_size})")
        if n // world_size < 1:
            raise ValueError(f"dataset of {n} samples cannot be shared by world_size = {world_size}")
        self.n, self.b, self.rank, self.world = n, batch_size, rank, world_size
        self.seed, self.streams, self.drop_last, self.shuffle = seed, streams, drop_last, shuffle
        self.indices = None if indices is None else np.asarray(indices, dtype=np.int64)
        if self.indices is not None and len(self.indices) != n:
            raise ValueError(f"{len(self.indices)} indices given for an order over n = {n}")
        self.per_rank = n // world_size
        if drop_last and self.per_rank < batch_size:
            raise ValueError(f"batch_size = {batch_size} exceeds the {self.per_rank} samples of each rank "
                             f"({n} samples / world_size {world_size}); lower data.batch_size")
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch):
        """Select the permutations of `epoch` (call before iterating, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def set_start_step(self, step):
        """Start the next iteration at batch `step` of the epoch (mid-epoch resume); resets to 0 after."""
        if not 0 <= step <= len(self):
            raise ValueError(f"start step = {step} must be in [0, {len(self)}]")
        self.start = int(step)

    def __len__(self):
        if self.drop_last:
            return self.per_rank // self.b
        return math.ceil(self.per_rank / self.b)

    def shard(self, epoch, stream):
        """This rank's part of the permutation of `stream` in `epoch`."""
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch, stream]).permutation(self.n)
        else:
            perm = np.arange(self.n)
        mine = perm[self.rank * self.per_rank:(self.rank + 1) * self.per_rank]
        return mine if self.indices is None else self.indices[mine]

    def epoch_order(self, epoch=None, start=None):
        """All indices of the epoch from step `start` on, flattened (each step = streams * b entries)."""
        epoch = self.epoch if epoch is None else epoch
        start = self.start if start is None else start
        steps = len(self)
        shards = [self.shard(epoch, s) for s in range(self.streams)]
        rows = []
        for i in range(start, steps):
            rows.extend(sh[i * self.b:(i + 1) * self.b] for sh in shards)
        return np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)

    def __iter__(self):
        """Yield index lists of streams * b per step; consumes the start step (next epoch starts at 0)."""
        start, self.start = self.start, 0
        shards = [self.shard(self.epoch, s) for s in range(self.streams)]
        for i in range(start, len(self)):
            yield np.concatenate([sh[i * self.b:(i + 1) * self.b] for sh in shards]).tolist()


class EvalOrder:
    """Rank r evaluates indices r, r + world, r + 2*world, ...: every sample exactly once across ranks,
    no padding duplicates (ranks may differ by one sample; the evaluator sums counts). With `indices`, the
    samples are those dataset indices instead of 0..n-1 (the holdout split)."""

    def __init__(self, n, batch_size, *, rank=0, world_size=1, indices=None):
        every = np.arange(n) if indices is None else np.asarray(indices, dtype=np.int64)
        self.idx = every[rank::world_size]
        self.b = batch_size

    def __len__(self):
        return math.ceil(len(self.idx) / self.b)

    def __iter__(self):
        for i in range(len(self)):
            yield self.idx[i * self.b:(i + 1) * self.b].tolist()
