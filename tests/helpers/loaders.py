"""The fake bip_dist.data.build_loaders (same signature): in-memory loaders of the learnable tiny data.

Like a DistributedSampler, each epoch is one global permutation of N_TRAIN samples dealt round-robin to
the ranks, so a world-size change keeps the set of samples seen, and the order is a pure function of
(seed, epoch, rank, world). Their augmentation noise comes from the global torch RNG, so an exact resume
needs the RNG state back, not only the weights. Steps per epoch: N_TRAIN / world / batch (halved for the
two streams of BiP, drawn from the one sampler).
"""

import contextlib
from types import SimpleNamespace

import torch

from tests.helpers.data import make_data
from tests.helpers.models import CLASSES, SIZE

N_TRAIN, N_VAL = 96, 32


class ShardedTrain:
    def __init__(self, bs, rank, world, seed, two_streams):
        self.bs, self.rank, self.world, self.seed, self.two = bs, rank, world, seed, two_streams
        self.per = bs * (2 if two_streams else 1)
        self.x, self.y = make_data(N_TRAIN, 7)
        self.epoch = self.start = 0

    def set_epoch(self, e):
        self.epoch = e

    def set_start_step(self, s):
        self.start = s

    def __len__(self):
        return (N_TRAIN // self.world) // self.per

    def __iter__(self):
        perm = torch.randperm(N_TRAIN, generator=torch.Generator().manual_seed(self.seed * 1000 + self.epoch))
        mine = perm[self.rank::self.world]
        for i in range(self.start, len(self)):
            idx = mine[i * self.per:(i + 1) * self.per]
            x = self.x[idx] + 0.05 * torch.randn(len(idx), 3, SIZE, SIZE)  # global RNG on purpose
            y = self.y[idx]
            if self.two:
                yield (x[:self.bs], y[:self.bs]), (x[self.bs:], y[self.bs:])
            else:
                yield x, y


def build_loaders(data_cfg, rank=0, world_size=1, seed=0, two_streams=False, device="cpu"):
    """Drop-in for bip_dist.data.build_loaders: data.batch_size per rank; validation sharded too."""
    vx, vy = make_data(N_VAL, 99)
    vx, vy = vx[rank::world_size], vy[rank::world_size]
    val = [(vx[i:i + 8], vy[i:i + 8]) for i in range(0, len(vx), 8)]
    return SimpleNamespace(train=ShardedTrain(data_cfg.batch_size, rank, world_size, seed, two_streams),
                           val=val, num_classes=CLASSES)


@contextlib.contextmanager
def in_train_loop():
    """Inside the block the training loop builds these loaders: for runs started by code that calls
    train() itself (bip-train, bip-sweep). Yields the loop module."""
    import bip_dist.train.loop as loop
    real, loop.build_loaders = loop.build_loaders, build_loaders
    try:
        yield loop
    finally:
        loop.build_loaders = real
