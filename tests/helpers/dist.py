"""Gloo jobs on 127.0.0.1 inside the test process: a free port, joining as a rank the way torchrun would,
and spawning the ranks of a job."""

import os

import torch

from bip_dist.engine.ddp import free_port  # noqa: F401 (re-exported: the tests import it from here)


def join_as(rank, world, port):
    """Make this process rank `rank` of a `world`-process job on 127.0.0.1:`port`, as torchrun would;
    returns the DistEnv the engines read."""
    from bip_dist.engine.dist_env import DistEnv
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.set_num_threads(1)
    return DistEnv.from_environ()


def spawn(world, fn, *args, start_method="spawn", join=True):
    """fn(rank, *args) in `world` processes joined as one job. start_method="fork" repeats no imports, which
    on a busy CPU saves most of a test's time, but a forked child shares the parent's state (its model
    registry among it). join=False returns at once with the processes."""
    import torch.multiprocessing as mp
    ctx = mp.start_processes(_join_then, args=(world, free_port(), fn, args), nprocs=world, join=join,
                             start_method=start_method)
    return None if join else ctx.processes


def _join_then(rank, world, port, fn, args):
    join_as(rank, world, port)
    fn(rank, *args)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
