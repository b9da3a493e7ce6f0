"""In-memory images and batches: learnable data for short training runs, random batches for step-by-step
comparisons, and a rank's shard of a global batch."""

import torch

from tests.helpers.models import CLASSES, SIZE


def make_data(n, seed):
    """Images whose mean colour channel encodes the class: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = 0.5 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    x[:, 0] += (y.float() - 1.5)[:, None, None]
    return x, y


def random_batches(iters, classes, two_streams, n=8, seed=1):
    """`iters` batches of `n` random images and labels (pairs of batches, the two streams of BiP)."""
    g = torch.Generator().manual_seed(seed)

    def one():
        return torch.randn(n, 3, SIZE, SIZE, generator=g), torch.randint(0, classes, (n,), generator=g)
    return [(one(), one()) if two_streams else one() for _ in range(iters)]


def shard(batch, rank, world):
    """This rank's contiguous part of a global batch (what a sharded loader would give it)."""
    if isinstance(batch[0], tuple):
        return tuple(shard(b, rank, world) for b in batch)
    x, y = batch
    k = x.shape[0] // world
    return x[rank * k:(rank + 1) * k], y[rank * k:(rank + 1) * k]
