"""Shared pieces of the checkpoint tests: a tiny registered model, rank-sharded in-memory loaders whose
order is a pure function of (seed, epoch, rank, world), config builders, a crash callback, and the
2-process worker.

The loaders stand in for bip_dist.data.build_loaders (same signature). Like a DistributedSampler, each
epoch is one global permutation dealt round-robin to the ranks, so a world-size change keeps the set of
samples seen. Their augmentation noise comes from the global torch RNG, so an exact resume needs the
RNG state back, not only the weights.
"""

import os
import socket
import sys
from types import SimpleNamespace

import torch

from bip_dist.checkpoint.trainer_state import Checkpointer
from bip_dist.models.registry import MODELS, register
from bip_dist.train.loop import train
from bip_dist.train.registry import TRAINERS
from bip_dist.train.callbacks import Callback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tiny_fixtures import CLASSES, SIZE, TinyNet, make_data  # noqa: E402

N_TRAIN, N_VAL = 96, 32
# Tiny convolutions are ~10x slower with two threads on a shared 2-core box than with one.
torch.set_num_threads(1)

if "ckptnet" not in MODELS:
    register("ckptnet")(TinyNet)


class ShardedTrain:
    def __init__(self, bs, rank, world, seed, two_streams):
        self.bs, self.rank, self.world, self.seed, self.two = bs, rank, world, seed, two_streams
        self.per = bs * (2 if two_streams else 1)  # both streams are drawn from the one sampler
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
    """Drop-in for bip_dist.data.build_loaders."""
    vx, vy = make_data(N_VAL, 99)
    vx, vy = vx[rank::world_size], vy[rank::world_size]
    val = [(vx[i:i + 8], vy[i:i + 8]) for i in range(0, len(vx), 8)]
    return SimpleNamespace(train=ShardedTrain(data_cfg.batch_size, rank, world_size, seed, two_streams),
                           val=val, num_classes=CLASSES)


def overrides(out, trainer, *extra):
    """Config overrides of a short deterministic run of `trainer` (dense / hydra / bip / ...) in `out`."""
    pruned = TRAINERS[trainer].prunes
    base = [f"out_dir={out}", "name=ck", "model.arch=ckptnet", f"trainer={trainer}",
            f"prune.layer_type={'unstructured' if pruned else 'dense'}",
            "prune.k=0.5", "train.epochs=2", "train.progress=false", "train.deterministic=true",
            "train.log_every=100", "data.batch_size=8", "data.workers=0", "ckpt.every_steps=2",
            "optim.lr=0.05", "score_optim.lr=0.1", "bip.lr2=0.01"]
    if TRAINERS[trainer].trains_scores and not any(e.startswith("source_net=") for e in extra):
        base.append("prune.from_scratch=true")  # these runs test checkpoints, not a pretrained start
    return base + list(extra)


def make_cfg(out, trainer, *extra):
    from bip_dist.config import load_config
    return load_config(None, overrides(out, trainer, *extra))


class Record(Callback):
    """A callback that saves, right after restore (on_start), the step and the state training resumes
    from, to `path` (per rank), so resharding tests can compare it with the checkpoint."""

    def __init__(self, path):
        self.path = path

    def on_start(self, state, parts, loaders, run_dir):
        opt = parts.step.engine.weight_opt_state()["state"]  # whole, also under DeepSpeed
        torch.save({"step": state.step, "epoch": state.epoch,
                    "model": {k: v.clone() for k, v in parts.model.state_dict().items()},
                    "weight_opt": {i: s["momentum_buffer"].clone() for i, s in opt.items()},
                    "score_opt": parts.score_opt.buf.clone() if parts.score_opt is not None else None},
                   self.path)


class Crash(RuntimeError):
    pass


class CrashAt(Callback):
    """A callback that stops the run (like a kill) right after step `step`, before its checkpoint."""

    def __init__(self, step):
        self.step = step

    def on_step(self, state, out):
        if self.step and state.step == self.step:
            raise Crash(f"crash at step {self.step}")


def run(cfg, engine=None, crash_at=0, record=None, callbacks=()):
    """train() with the fake loaders; returns the result dict, or None when CrashAt fired. After a crash
    a background write still in flight is waited for (not published): a process that dies leaves it
    unpublished too, and an in-process rerun must not race with its thread."""
    made = []

    def checkpointer(*args):
        made.append(Checkpointer(*args))
        return made[-1]
    try:
        cbs = [CrashAt(crash_at)] + ([Record(record)] if record else []) + list(callbacks)
        return train(cfg, engine, callbacks=cbs, make_loaders=build_loaders, make_checkpointer=checkpointer)
    except Crash:
        pending = made[-1].pending if made else None
        if pending is not None and pending[0] is not None:
            pending[0].result()
        return None


def final_state(run_dir):
    """Model, both optimizers and the step count from final.pt."""
    from bip_dist.checkpoint.io import load_checkpoint
    ck = load_checkpoint(os.path.join(run_dir, "final.pt"))
    return {"model": ck["model"], "weight_opt": ck["weight_opt"].get("state", {}),  # {} under DeepSpeed
            "score_opt": ck["score_opt"].get("momentum_buffer"), "step": ck["state"]["step"]}


def assert_same(a, b):
    """Bitwise equality of two final_state dicts."""
    assert a["step"] == b["step"]
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for i in a["weight_opt"]:
        assert torch.equal(a["weight_opt"][i]["momentum_buffer"], b["weight_opt"][i]["momentum_buffer"]), i
    if a["score_opt"] is not None:
        assert torch.equal(a["score_opt"], b["score_opt"])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def join_as(rank, world, port):
    """Make this process rank `rank` of a `world`-process job on 127.0.0.1:`port`, as torchrun would."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    os.environ.setdefault("DS_ACCELERATOR", "cpu")
    torch.set_num_threads(1)


def ddp_worker(rank, world, port, args_list):
    """mp.spawn target: run each (out, trainer, extra overrides, crash_at, record prefix) in turn under
    the configured distributed engine; a record prefix saves the resumed-from state as <prefix><rank>.pt."""
    join_as(rank, world, port)
    from bip_dist.engine import make_engine
    engine = None
    for out, trainer, extra, crash_at, record in args_list:
        cfg = make_cfg(out, trainer, *extra)
        engine = make_engine(cfg)  # DDPEngine, or DeepSpeedEngine with dist.backend=deepspeed
        run(cfg, engine, crash_at, f"{record}{rank}.pt" if record else None)
        engine.barrier()
    engine.shutdown()


def spawn(world, args_list):
    import torch.multiprocessing as mp
    mp.spawn(ddp_worker, args=(world, free_port(), args_list), nprocs=world, join=True)
