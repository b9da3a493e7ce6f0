"""Two-stream orders: seeded, disjoint per rank, resumable; evaluation shard counts each sample once."""

import numpy as np
import pytest

from bip_dist.data.samplers import EvalOrder, TrainOrder


def _epoch(order, epoch, start=0):
    order.set_epoch(epoch)
    order.set_start_step(start)
    return [list(b) for b in order]


def test_two_streams_disjoint_per_rank_and_seeded():
    n, b, world = 103, 4, 3
    orders = [TrainOrder(n, b, rank=r, world_size=world, seed=7, streams=2) for r in range(world)]
    batches = [_epoch(o, 1) for o in orders]
    assert all(len(bs) == (n // world) // b == len(o) for bs, o in zip(batches, orders))
    for stream in (0, 1):
        seen = [set(i for bt in bs for i in bt[stream * b:(stream + 1) * b]) for bs in batches]
        assert sum(map(len, seen)) == len(set().union(*seen)) == world * len(batches[0]) * b  # disjoint
    first, second = ([bt[:b] for bt in batches[0]], [bt[b:] for bt in batches[0]])
    assert first != second  # independent permutations
    again = _epoch(TrainOrder(n, b, rank=0, world_size=world, seed=7, streams=2), 1)
    assert again == batches[0]
    assert _epoch(orders[0], 2) != batches[0]  # new epoch, new order
    assert _epoch(TrainOrder(n, b, rank=0, world_size=world, seed=8, streams=2), 1) != batches[0]


def test_start_step_resumes_exactly_and_once():
    o = TrainOrder(50, 5, seed=1, streams=2)
    full = _epoch(o, 3)
    assert _epoch(o, 3, start=4) == full[4:]
    assert [list(bt) for bt in o] == full  # the offset applies to one iteration only
    assert np.array_equal(o.epoch_order(3, 4), np.concatenate(full[4:]))
    with pytest.raises(ValueError):
        o.set_start_step(len(o) + 1)


def test_eval_order_counts_every_sample_once():
    n, world = 23, 4
    idx = [i for r in range(world) for bt in EvalOrder(n, 5, rank=r, world_size=world) for i in bt]
    assert sorted(idx) == list(range(n))


def test_batch_larger_than_shard_is_a_clear_error():
    with pytest.raises(ValueError, match="batch_size"):
        TrainOrder(10, 8, rank=0, world_size=2)
