"""Short in-process train() runs of the tiny model on the fake loaders: config builders, a crash callback,
a callback that records the state a run resumes from, and the same runs on the ranks of a gloo job.

Configs name model.arch=tinynet: the test (tiny_models fixture) or the worker (models.registered)
registers it."""

import torch

from bip_dist.checkpoint.trainer_state import Checkpointer
from bip_dist.train.callbacks import Callback
from bip_dist.train.loop import train
from bip_dist.train.registry import TRAINERS
from tests.helpers import loaders, models

# Tiny convolutions are ~10x slower with two threads on a shared 2-core box than with one.
torch.set_num_threads(1)


def tiny_overrides(out, *extra):
    """Config overrides of two epochs of the tiny model in `out` (batch 8, no progress bar), then `extra`."""
    return [f"out_dir={out}", "model.arch=tinynet", "train.epochs=2", "train.progress=false",
            "data.batch_size=8", "data.workers=0", *extra]


def tiny_cfg(out, *extra):
    """The validated config of tiny_overrides."""
    from bip_dist.config import load_config
    return load_config(None, tiny_overrides(out, *extra))


def overrides(out, trainer, *extra):
    """Config overrides of a short deterministic run of `trainer` (dense / hydra / bip / ...) in `out`:
    6 steps per epoch for BiP on one rank, a checkpoint every 2 steps."""
    pruned = TRAINERS[trainer].prunes
    base = ["name=ck", f"trainer={trainer}", f"prune.layer_type={'unstructured' if pruned else 'dense'}",
            "prune.k=0.5", "train.deterministic=true", "train.log_every=100", "ckpt.every_steps=2",
            "optim.lr=0.05", "score_optim.lr=0.1", "bip.lr2=0.01"]
    if TRAINERS[trainer].trains_scores and not any(e.startswith("source_net=") for e in extra):
        base.append("prune.from_scratch=true")  # these runs test checkpoints, not a pretrained start
    return tiny_overrides(out, *base, *extra)


def make_cfg(out, trainer, *extra):
    """The validated config of overrides()."""
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
        return train(cfg, engine, callbacks=cbs, make_loaders=loaders.build_loaders,
                     make_checkpointer=checkpointer)
    except Crash:
        pending = made[-1].pending if made else None
        if pending is not None and pending[0] is not None:
            pending[0].result()
        return None


def ranked_run(cfg, callbacks=()):
    """run() of `cfg` on a fresh engine of this process's rank (in a process that joined a job)."""
    from bip_dist.engine import make_engine
    return run(cfg, make_engine(cfg), callbacks=callbacks)


def run_jobs(rank, jobs):
    """Worker of dist.spawn: each (out, trainer, extra overrides, crash_at, record prefix) in turn under the
    configured distributed engine; a record prefix saves the resumed-from state as <prefix><rank>.pt."""
    from bip_dist.engine import make_engine
    engine = None
    with models.registered():
        for out, trainer, extra, crash_at, record in jobs:
            cfg = make_cfg(out, trainer, *extra)
            engine = make_engine(cfg)  # DDPEngine, or DeepSpeedEngine with dist.backend=deepspeed
            run(cfg, engine, crash_at, f"{record}{rank}.pt" if record else None)
            engine.barrier()
    engine.shutdown()
