"""When training checkpoints are written and read: every N steps, at epoch ends, on resume.

Each checkpoint is one folder (layout.py) written by every rank: model and optimizer tensors through DCP
(each rank writes a share), RNG states per rank, the rest by rank 0. The weight optimizer is always held
whole in torch SGD's format (DeepSpeed's ZeRO partitions are gathered for it), so a checkpoint resumes
under either backend and at any world size. With `ckpt.async_save` the tensors are copied to
CPU memory and written by a background thread while training goes on; the folder is published (renamed,
then `latest` replaced) once rank 0's write, which completes only after every rank's, has finished.
`final.pt` stays a single file: the next stage's `source_net`. Every file gets a checksum as it is
written (integrity.py), checked before a resume; a full disk stops the run with one line (SaveFailed).
"""

import shutil
from pathlib import Path

import torch.distributed as dist

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.integrity import CHECKSUMMED, BadCheckpoint
from bip_dist.checkpoint.io import SaveFailed, is_disk_full, save_atomic
from bip_dist.checkpoint.layout import EXTRA, Layout, rank_file, step_name, tmp_name
from bip_dist.checkpoint.resume import end_metrics, pick, restore_file, restore_folder
from bip_dist.checkpoint.state import collect, data_position, rng_state, seed_host_rngs, set_rng_state
from bip_dist.config import config_to_dict
from bip_dist.run_dir import git_revision, note

__all__ = ["Checkpointer", "training_state", "rng_state", "set_rng_state"]


def training_state(cfg, state, parts, weight_sd, metrics=None):
    """The single-file form of a checkpoint (final.pt): everything in one weights_only-loadable dict;
    `weight_sd` is engine.weight_opt_state(), `metrics` the run's last evaluation."""
    return {
        "metrics": plain_metrics(metrics),
        "model": parts.model.state_dict(),
        "weight_opt": weight_sd,
        "score_opt": parts.score_opt.state_dict() if parts.score_opt is not None else {},
        "state": state.as_dict(),
        "rng": rng_state(),
        "meta": parts.meta,
        "config": config_to_dict(cfg),
        "git_rev": git_revision(),
        CHECKSUMMED: True,  # written with sidecar=True: a missing final.pt.sum is then an error
    }


def plain_metrics(metrics):
    """Evaluation metrics as plain numbers and strings (weights_only-loadable, unlike numpy scalars)."""
    return {k: v if v is None or isinstance(v, (bool, int, float, str)) else float(v)
            for k, v in (metrics or {}).items()}


class Checkpointer:
    """Sharded, atomic, optionally asynchronous checkpoints of one run (every rank constructs one)."""

    def __init__(self, cfg, run_dir, engine):
        self.cfg, self.engine, self.run_dir = cfg, engine, Path(run_dir)
        self.layout = Layout(self.run_dir / "checkpoints")
        self.final = self.run_dir / "final.pt"
        self.every, self.keep, self.async_save = cfg.ckpt.every_steps, cfg.ckpt.keep_last, cfg.ckpt.async_save
        self.group = None
        if engine.world_size > 1 and dist.is_initialized():
            # DCP's collectives get their own gloo group: a background save must not interleave with
            # the training collectives on the default group, and gloo handles CPU tensors under NCCL too.
            self.group = dist.new_group(backend="gloo")
        self.pending = None
        self.end_metrics = {}  # the last evaluation, when resuming a run that had already reached its end
        if engine.is_main:
            self.layout.clean_partial()
        engine.barrier()

    # --- resume ----------------------------------------------------------------------------------
    def _choose(self):
        """Rank 0 picks (and checks) what to resume from, every rank takes its choice or its error."""
        if not self.cfg.ckpt.resume:
            return None
        choice = None
        if self.engine.is_main:
            try:
                choice = pick(self.cfg.ckpt.resume, self.layout, lambda line: note(self.run_dir, line))
            except (BadCheckpoint, FileNotFoundError) as e:
                choice = e
        if self.group is not None:
            box = [choice]
            dist.broadcast_object_list(box, src=0, group=self.group)
            choice = box[0]
        if isinstance(choice, Exception):
            raise choice
        return choice

    def restore(self, state, parts, loaders):
        """Load the checkpoint named by `ckpt.resume` into `parts` and `state`; False for a fresh start.
        A checkpoint taken at the end of the run also gets what the run's end writes (final.pt)."""
        seed_host_rngs(self.cfg.seed, self.engine.rank)  # also what a rank new to the job keeps on resume
        path = self._choose()
        if path is None:
            return False
        spe = len(loaders.train)
        if path.is_file():
            saved = restore_file(path, state, parts, self.engine)
        else:
            saved = restore_folder(path, state, parts, self.engine, spe, self.cfg.data.batch_size)
        metrics = end_metrics(state, saved, path, self.cfg.train.max_steps, self.cfg.train.epochs, spe)
        if metrics is not None:
            # The process died between its last checkpoint and final.pt / result.json: finish them now.
            if self.engine.is_main:
                note(self.run_dir, f"resume: {path.name} is at this run's end (step {state.step}); nothing "
                                   "to train: final.pt and result.json are written from it")
            self.end_metrics = metrics
            self._write_final(state, parts, self.engine.weight_opt_state(), self.end_metrics)
        return True

    # --- save ------------------------------------------------------------------------------------
    def _failed(self, exc, step, target, tmp=None):
        """Raise SaveFailed (one line) when the disk is full, after removing the torn temporary folder
        to give the space back; any other error is left to propagate as it is."""
        if not is_disk_full(exc):
            return
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        prev = self.layout.newest()
        kept = f"the previous checkpoint {prev.name} is intact" if prev else "there is no earlier checkpoint"
        raise SaveFailed(f"no space left on device while saving step {step} to {target}; {kept}") from None

    def _save(self, state, parts, loaders, best=False, weight_sd=None, metrics=None):
        self._finish(block=True)  # at most one save in flight
        e = self.engine
        name = step_name(state.step, state.epoch)
        tmp = self.layout.root / tmp_name(name)
        data = data_position(state, len(loaders.train), self.cfg.data.batch_size, e.world_size)
        if weight_sd is None:
            weight_sd = e.weight_opt_state()  # collective under DeepSpeed
        flat, extra, mine = collect(self.cfg, state, parts, e, data, weight_sd)
        extra["metrics"] = plain_metrics(metrics)
        extra[CHECKSUMMED] = True  # every rank writes checksums_<r>.json: losing one is then an error
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            beside = {rank_file(e.rank): save_atomic(mine, tmp / rank_file(e.rank))}
            if e.is_main:
                beside[EXTRA] = save_atomic(extra, tmp / EXTRA)
            fut = dcp_io.save_flat(flat, tmp, group=self.group, async_save=self.async_save, beside=beside)
        except BaseException as exc:
            self._failed(exc, state.step, self.layout.root / name, tmp)
            raise
        self.pending = (fut, tmp, name, best, state.step)
        if not self.async_save:
            self._finish(block=True)
            e.barrier()  # a synchronous save returns on every rank with `latest` already updated

    def _finish(self, block):
        """Publish the save in flight once it is complete (rank 0 renames, then moves the pointers)."""
        if self.pending is None:
            return
        fut, tmp, name, best, step = self.pending
        if fut is not None and not block and not fut.done():
            return
        self.pending = None
        try:
            if fut is not None:
                fut.result()  # re-raises a failed background write
            if self.engine.is_main:
                self.layout.publish(tmp, name)
                if best:
                    self.layout.write_pointer("best", name)
                self.layout.write_pointer("latest", name)
                self.layout.prune(self.keep)
        except BaseException as exc:
            self._failed(exc, step, self.layout.root / name, tmp)
            raise

    def _write_final(self, state, parts, weight_sd, metrics):
        if self.engine.is_main:
            try:
                save_atomic(training_state(self.cfg, state, parts, weight_sd, metrics), self.final, sidecar=True)
            except BaseException as exc:
                self._failed(exc, state.step, self.final)
                raise

    def maybe_save_step(self, state, parts, loaders):
        """Every `ckpt.every_steps` steps; skipped where save_epoch follows at once (epoch end, max_steps)."""
        self._finish(block=False)
        if not self.every or state.step % self.every:
            return
        spe = len(loaders.train)
        if state.step - state.epoch * spe >= spe or state.step == self.cfg.train.max_steps:
            return
        self._save(state, parts, loaders)

    def save_now(self, state, parts, loaders):
        """A checkpoint of this step wherever it falls (preemption); close() publishes it."""
        self._save(state, parts, loaders)

    def save_epoch(self, state, parts, loaders, metrics, final=False):
        """At each epoch end (and at the run's end): a checkpoint, the `best` pointer, final.pt."""
        # The selection split when there is one (data.holdout): choosing on val would choose on the test set.
        top1 = metrics.get("holdout_top1", metrics.get("val_top1"))
        is_best = top1 is not None and top1 > state.best_top1
        if is_best:
            state.best_top1 = top1
        weight_sd = self.engine.weight_opt_state()  # every rank: a collective under DeepSpeed
        self._save(state, parts, loaders, best=is_best, weight_sd=weight_sd, metrics=metrics)
        if final:
            self._write_final(state, parts, weight_sd, metrics)

    def close(self):
        """Wait for a background save and publish it."""
        self._finish(block=True)
        self.engine.barrier()
