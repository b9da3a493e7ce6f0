"""The training loop shared by every trainer: data, schedules, steps, evaluation, checkpoints, callbacks."""

import functools
import json
import time

import torch

from bip_dist.baselines import RewindSaver
from bip_dist.checkpoint.trainer_state import Checkpointer
from bip_dist.data import build_loaders
from bip_dist.engine import LocalEngine
from bip_dist.monitor import monitors_for
from bip_dist.optim import LrSchedule
from bip_dist.run_dir import prepare_run_dir
from bip_dist.train.build import build_parts
from bip_dist.train.callbacks import MetricsLog, record_hang
from bip_dist.train.collapse import CollapseWatch
from bip_dist.train.evaluate import evaluate
from bip_dist.train.guards import StepGuard
from bip_dist.train.registry import trainer_spec
from bip_dist.train.state import TrainState


def _lr_scale(cfg, world_size):
    if not cfg.dist.scale_lr:
        return 1.0
    return cfg.data.batch_size * world_size / cfg.dist.base_batch


def callbacks_for(cfg, engine):
    """Observers for a run: the IMP rewind-point saver (baseline.save_rewind), the collapse watch of masked
    runs, then progress and TensorBoard on rank 0 (bip_dist.monitor)."""
    cbs = [RewindSaver(cfg.baseline.save_rewind, engine.is_main)] if cfg.baseline.save_rewind else []
    if cfg.prune.layer_type != "dense":  # every rank: with on_collapse: stop they all stop together
        cbs.append(CollapseWatch(cfg.train.log_every, cfg.prune.on_collapse, engine.is_main, engine.rank))
    return cbs + monitors_for(cfg, engine)


def train(cfg, engine=None, callbacks=(), make_loaders=None, make_checkpointer=None):
    """Run one stage (pretrain / prune / finetune) of `cfg`; returns the final metrics dict.

    `make_loaders` (signature of bip_dist.data.build_loaders) and `make_checkpointer` (of Checkpointer)
    replace the real ones, for tests."""
    engine = engine or LocalEngine()
    if cfg.train.deterministic:
        torch.use_deterministic_algorithms(True)
    run_dir = prepare_run_dir(cfg, write=engine.is_main)
    engine.barrier()
    loaders = (make_loaders or build_loaders)(cfg.data, rank=engine.rank, world_size=engine.world_size,
                                              seed=cfg.seed, two_streams=trainer_spec(cfg.trainer).two_streams,
                                              device=str(engine.device))
    parts = build_parts(cfg, engine, loaders.num_classes)
    spe = len(loaders.train)
    scale = _lr_scale(cfg, engine.world_size)
    w_lr = LrSchedule(cfg.optim, cfg.optim.lr * scale, spe, cfg.train.epochs)
    s_lr = LrSchedule(cfg.score_optim, cfg.score_optim.lr * scale, spe, cfg.train.epochs)
    state = TrainState()
    engine.on_hang(functools.partial(record_hang, run_dir, state))
    ckpt = (make_checkpointer or Checkpointer)(cfg, run_dir, engine)
    ckpt.restore(state, parts, loaders)
    cbs = list(callbacks)
    if engine.is_main:
        # Last, so it records what monitors add to the step dict and epoch metrics (throughput, memory).
        cbs.append(MetricsLog(run_dir, cfg.train.log_every))
    try:
        for cb in cbs:
            cb.on_start(state, parts, loaders, run_dir)
        guard = StepGuard(cfg, engine, parts, ckpt)
        metrics = _run(cfg, engine, parts, loaders, state, ckpt, cbs, (w_lr, s_lr), spe, guard)
    except BaseException as exc:
        for cb in cbs:
            cb.on_error(state, exc)
        raise
    finally:
        # Also on a crash: the last scalars and log lines are what explain it.
        for cb in cbs:
            cb.close()
    ckpt.close()
    result = {"run_dir": str(run_dir), "step": state.step, "epoch": state.epoch, **metrics}
    if engine.is_main:
        # Written last: its presence tells sweeps and the demo that this stage finished.
        tmp = run_dir / "result.json.tmp"
        tmp.write_text(json.dumps(result, indent=2, allow_nan=False))  # the guard stops non-finite runs
        tmp.replace(run_dir / "result.json")
    engine.barrier()
    return result


def _run(cfg, engine, parts, loaders, state, ckpt, cbs, lrs, spe, guard):
    """The epochs from `state` on; returns the last evaluation's metrics. `guard` (train/guards.py) stops
    a diverged run before it logs or saves non-finite values, and a preempted one after its checkpoint."""
    w_lr, s_lr = lrs
    metrics = dict(ckpt.end_metrics)  # a resume at the run's end trains nothing: its last evaluation
    max_steps = cfg.train.max_steps or spe * cfg.train.epochs
    while state.epoch < cfg.train.epochs and state.step < max_steps:
        epoch = state.epoch
        loaders.train.set_epoch(epoch)
        loaders.train.set_start_step(state.step - epoch * spe)
        parts.model.train()
        t_prev = time.perf_counter()
        for batch in loaders.train:
            t_data = time.perf_counter() - t_prev
            lr_t, lr_s = w_lr(state.step), s_lr(state.step)
            parts.step.set_lrs(lr_t, lr_s)
            # Only at the steps MetricsLog records are step parts timed (a device sync each, on CUDA) and
            # diagnostics that cost a pass over every score (its gradient's norm) computed.
            engine.logged_step = (state.step + 1) % cfg.train.log_every == 0
            out = parts.step(batch)
            state.step += 1
            stop = guard.after_step(state.step, out)
            out.update(time_data=t_data, lr_theta=lr_t, lr_score=lr_s)
            out["time_step"] = time.perf_counter() - t_prev
            for cb in cbs:
                cb.on_step(state, out)
            if stop and state.step - epoch * spe < spe and state.step < max_steps:
                guard.checkpoint_and_stop(state, loaders)  # else the epoch-end checkpoint below comes first
            with engine.watch("a checkpoint save"):  # its collectives run inside DCP
                ckpt.maybe_save_step(state, parts, loaders)
            t_prev = time.perf_counter()
            if state.step >= max_steps:
                break
        finished = state.step - epoch * spe >= spe
        if finished:
            state.epoch += 1
            engine.sync_bn_stats(cfg.dist.bn_stats)
        last = state.epoch >= cfg.train.epochs or state.step >= max_steps
        metrics = {}
        if last or (finished and state.epoch % cfg.train.eval_every == 0):
            metrics = evaluate(engine, engine.unwrap(), loaders.val)
            if getattr(loaders, "holdout", None) is not None:  # data.holdout: the selection split
                metrics.update(evaluate(engine, engine.unwrap(), loaders.holdout, prefix="holdout"))
            if parts.store is not None:
                metrics["sparsity"] = parts.store.sparsity()
        stop = guard.at_epoch_end(state.step, metrics)
        for cb in cbs:
            cb.on_epoch_end(state, metrics)
        with engine.watch("the epoch-end checkpoint save"):
            ckpt.save_epoch(state, parts, loaders, metrics, final=last)
        if stop and not last:
            guard.checkpoint_and_stop(state, loaders, saved=True)
    return metrics
