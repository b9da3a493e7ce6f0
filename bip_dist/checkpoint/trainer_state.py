"""When training checkpoints are written and read: every N steps, at epoch ends, on resume.

Each checkpoint is one folder (layout.py) written by every rank: model and optimizer tensors through DCP
(each rank writes a share), RNG states per rank, the rest by rank 0. The weight optimizer is always held
whole in torch SGD's format (DeepSpeed's ZeRO partitions are gathered for it), so a checkpoint resumes
under either backend and at any world size. With `ckpt.async_save` the tensors are copied to
CPU memory and written by a background thread while training goes on; the folder is published (renamed,
then `latest` replaced) once rank 0's write, which completes only after every rank's, has finished.
`final.pt` stays a single file: the next stage's `source_net`.
"""

from pathlib import Path

import torch.distributed as dist

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.io import load_checkpoint, save_atomic
from bip_dist.checkpoint.layout import EXTRA, Layout, is_complete, rank_file, step_name, tmp_name
from bip_dist.checkpoint.locate import locate
from bip_dist.checkpoint.state import (apply_model, apply_optimizers, collect, data_position, resume_step,
                                       rng_state, set_rng_state)
from bip_dist.config import config_to_dict
from bip_dist.run_dir import git_revision

__all__ = ["Checkpointer", "training_state", "rng_state", "set_rng_state"]


def training_state(cfg, state, parts, weight_sd):
    """The single-file form of a checkpoint (final.pt): everything in one weights_only-loadable dict;
    `weight_sd` is engine.weight_opt_state()."""
    return {
        "model": parts.model.state_dict(),
        "weight_opt": weight_sd,
        "score_opt": parts.score_opt.state_dict() if parts.score_opt is not None else {},
        "state": state.as_dict(),
        "rng": rng_state(),
        "meta": parts.meta,
        "config": config_to_dict(cfg),
        "git_rev": git_revision(),
    }


class Checkpointer:
    """Sharded, atomic, optionally asynchronous checkpoints of one run (every rank constructs one)."""

    def __init__(self, cfg, run_dir, engine):
        self.cfg, self.engine = cfg, engine
        self.layout = Layout(Path(run_dir) / "checkpoints")
        self.final = Path(run_dir) / "final.pt"
        self.every, self.keep, self.async_save = cfg.ckpt.every_steps, cfg.ckpt.keep_last, cfg.ckpt.async_save
        self.group = None
        if engine.world_size > 1 and dist.is_initialized():
            # DCP's collectives get their own gloo group: a background save must not interleave with
            # the training collectives on the default group, and gloo handles CPU tensors under NCCL too.
            self.group = dist.new_group(backend="gloo")
        self.pending = None
        if engine.is_main:
            self.layout.clean_partial()
        engine.barrier()

    # --- resume ----------------------------------------------------------------------------------
    def _resume_path(self):
        """What `ckpt.resume` names (checkpoint.locate): 'auto' is this run's checkpoints/ folder."""
        r = self.cfg.ckpt.resume
        if not r:
            return None
        if r == "auto":
            return self.layout.newest()
        return locate(r)

    def restore(self, state, parts, loaders):
        """Load the checkpoint named by `ckpt.resume` into `parts` and `state`; False for a fresh start."""
        path = self._resume_path()
        if path is None:
            return False
        if path.is_file():
            self._restore_file(path, state, parts)
            return True
        if not is_complete(path):
            raise ValueError(f"{path}: incomplete checkpoint (no .metadata or {EXTRA})")
        extra = load_checkpoint(path / EXTRA)
        mine_path = path / rank_file(self.engine.rank)
        mine = load_checkpoint(mine_path) if mine_path.is_file() else None
        flat = dcp_io.load_flat(path)
        apply_model(parts.model, flat, mine)
        apply_optimizers(parts, flat, extra, self.engine)
        state.load(extra["state"])
        state.step = resume_step(extra.get("data"), state.step, len(loaders.train),
                                 self.cfg.data.batch_size, self.engine.world_size)
        if mine is not None:  # a rank the writing job did not have keeps its fresh-start generators
            set_rng_state(mine["rng"])
        return True

    def _restore_file(self, path, state, parts):
        ck = load_checkpoint(path, map_location=self.engine.device)
        if not ck.get("weight_opt"):
            raise ValueError(f"{path}: no weight-optimizer state; resume from a checkpoints/ folder")
        parts.model.load_state_dict(ck["model"])
        self.engine.load_weight_opt_state(ck["weight_opt"])
        if parts.score_opt is not None:
            parts.score_opt.load_state_dict(ck["score_opt"])
        state.load(ck["state"])
        set_rng_state(ck["rng"])

    # --- save ------------------------------------------------------------------------------------
    def _save(self, state, parts, loaders, best=False, weight_sd=None):
        self._finish(block=True)  # at most one save in flight
        e = self.engine
        name = step_name(state.step, state.epoch)
        tmp = self.layout.root / tmp_name(name)
        tmp.mkdir(parents=True, exist_ok=True)
        data = data_position(state, len(loaders.train), self.cfg.data.batch_size, e.world_size)
        if weight_sd is None:
            weight_sd = e.weight_opt_state()  # collective under DeepSpeed
        flat, extra, mine = collect(self.cfg, state, parts, e, data, weight_sd)
        save_atomic(mine, tmp / rank_file(e.rank))
        if e.is_main:
            save_atomic(extra, tmp / EXTRA)
        fut = dcp_io.save_flat(flat, tmp, group=self.group, async_save=self.async_save)
        self.pending = (fut, tmp, name, best)
        if not self.async_save:
            self._finish(block=True)
            e.barrier()  # a synchronous save returns on every rank with `latest` already updated

    def _finish(self, block):
        """Publish the save in flight once it is complete (rank 0 renames, then moves the pointers)."""
        if self.pending is None:
            return
        fut, tmp, name, best = self.pending
        if fut is not None:
            if not block and not fut.done():
                return
            fut.result()  # re-raises a failed background write
        self.pending = None
        if self.engine.is_main:
            self.layout.publish(tmp, name)
            if best:
                self.layout.write_pointer("best", name)
            self.layout.write_pointer("latest", name)
            self.layout.prune(self.keep)

    def maybe_save_step(self, state, parts, loaders):
        """Every `ckpt.every_steps` steps; skipped where save_epoch follows at once (epoch end, max_steps)."""
        self._finish(block=False)
        if not self.every or state.step % self.every:
            return
        spe = len(loaders.train)
        if state.step - state.epoch * spe >= spe or state.step == self.cfg.train.max_steps:
            return
        self._save(state, parts, loaders)

    def save_epoch(self, state, parts, loaders, metrics, final=False):
        """At each epoch end (and at the run's end): a checkpoint, the `best` pointer, final.pt."""
        top1 = metrics.get("val_top1")
        is_best = top1 is not None and top1 > state.best_top1
        if is_best:
            state.best_top1 = top1
        weight_sd = self.engine.weight_opt_state()  # every rank: a collective under DeepSpeed
        self._save(state, parts, loaders, best=is_best, weight_sd=weight_sd)
        if final and self.engine.is_main:
            save_atomic(training_state(self.cfg, state, parts, weight_sd), self.final)

    def close(self):
        """Wait for a background save and publish it."""
        self._finish(block=True)
        self.engine.barrier()
