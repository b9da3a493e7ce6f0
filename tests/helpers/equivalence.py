"""The step cases of the equivalence tests: every trainer's step on the BatchNorm-free tiny net, run for
ITERS iterations in one process on the global batch or on WORLD ranks on their shards, and compared.

Steps are built by the trainer registry's make_step, from the schema's config sections.
"""

import os

import torch

from bip_dist.config.schema import BipConfig, DistConfig, OptimConfig, ScoreOptimConfig
from bip_dist.engine.dist_env import DistEnv
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.registry import TRAINERS, make_step
from tests.helpers.data import random_batches, shard
from tests.helpers.models import tiny_net

WORLD = 2
PER_RANK = 4     # batch per rank; the single-process reference sees WORLD * PER_RANK
ITERS = 3
CLASSES = 10

# name -> (trainer, fused, implicit, score_grad_dtype)
CASES = {
    "bip_fused": ("bip", True, "reference", "fp32"),
    "bip_3pass": ("bip", False, "reference", "fp32"),
    "bip_paper": ("bip", True, "paper", "fp32"),
    "hydra": ("hydra", True, "none", "fp32"),
    "dense": ("dense", True, "none", "fp32"),
    "finetune": ("finetune", True, "none", "fp32"),
    "bip_bf16": ("bip", True, "reference", "bf16"),
    "bip_cl": ("bip", True, "reference", "fp32"),
    "bip_first_order": ("bip_first_order", True, "reference", "fp32"),
    "bip_first_order_paper": ("bip_first_order", True, "paper", "fp32"),
}
CHANNELS_LAST = ("bip_cl",)  # run with dist.channels_last (the model as build_parts converts it)


def dist_cfg(grad_dtype="fp32", backend="ddp", ds_config="", check_masks=True, bucket_mb=0.0005,
             channels_last=False):
    """The dist section the engines read. Tiny buckets: several per model."""
    return DistConfig(backend=backend, bucket_mb=bucket_mb, score_grad_dtype=grad_dtype, check_masks=check_masks,
                      deepspeed_config=ds_config, channels_last=channels_last)


def build(case, engine, seed=0):
    """Model, store and step object of `case` on `engine` (the tiny net, pruned as build_parts would)."""
    trainer, fused, implicit, _ = CASES[case]
    torch.manual_seed(seed)
    model = tiny_net(CLASSES)
    store = None
    if TRAINERS[trainer].prunes:
        make_prunable(model, "unstructured")
    if engine.channels_last:
        model.to(memory_format=torch.channels_last)
    if TRAINERS[trainer].prunes:
        store = ScoreStore(model, 0.3, "unstructured")
        store.init_scores("magnitude")
        store.refresh_mask()
    step = make_step(trainer, engine, model, store, OptimConfig(lr=0.05),
                     ScoreOptimConfig(lr=0.5, weight_decay=1e-4), BipConfig(fused=fused, implicit=implicit, lr2=1e-2))
    return model, store, step


def batches(two_streams):
    """ITERS global batches of WORLD * PER_RANK samples (two independent streams for BiP)."""
    return random_batches(ITERS, CLASSES, two_streams, n=WORLD * PER_RANK)


def run(case, engine, rank=0, world=1):
    """Train `case` for ITERS iterations on this rank's shards; return weights, scores and mask."""
    model, store, step = build(case, engine)
    model.train()
    for b in batches(step.two_streams):
        step(shard(b, rank, world))
    out = {"params": {n: p.detach().clone() for n, p in model.named_parameters() if not n.endswith("scores")},
           "comm_bytes": engine.comm_bytes}
    if store is not None:
        out.update(scores=store.scores.clone(), mask=store.mask.clone(), hash=store.mask_hash())
    return out


def assert_same_result(ref, results, case):
    """Every rank's weights and scores match the 1-process reference (fp32 tolerance), masks exactly."""
    for rank, res in enumerate(results):
        got = res[case]
        for name, p in ref["params"].items():
            torch.testing.assert_close(got["params"][name], p, rtol=1e-5, atol=1e-6, msg=f"rank {rank} {name}")
        if "scores" in ref:
            torch.testing.assert_close(got["scores"], ref["scores"], rtol=1e-5, atol=1e-6)
            assert torch.equal(got["mask"], ref["mask"]), f"rank {rank}: mask differs from 1-process run"


def ddp_worker(rank, outdir, cases):
    """Worker of dist.spawn: every case under DDPEngine, results saved per rank."""
    from bip_dist.engine.ddp import DDPEngine
    res = {}
    engine = None
    for case in cases:
        engine = DDPEngine(dist_cfg(CASES[case][3], channels_last=case in CHANNELS_LAST), PER_RANK,
                           DistEnv.from_environ())
        res[case] = run(case, engine, rank, WORLD)
        if engine.reducer is not None:
            res[case]["buckets"] = len(engine.reducer.buckets)
            res[case]["overlapped"] = engine.reducer.overlapped
            engine.reducer.remove()
    torch.save(res, os.path.join(outdir, f"ddp{rank}.pt"))
    engine.shutdown()


def deepspeed_worker(rank, outdir, cases, ds_config):
    """Worker of dist.spawn: cases under DeepSpeedEngine (ZeRO config `ds_config`)."""
    from bip_dist.engine.deepspeed_engine import DeepSpeedEngine
    res = {}
    engine = None
    for case in cases:
        cfg = dist_cfg(CASES[case][3], "deepspeed", ds_config, channels_last=case in CHANNELS_LAST)
        engine = DeepSpeedEngine(cfg, PER_RANK, DistEnv.from_environ())
        try:
            res[case] = run(case, engine, rank, WORLD)
        except ValueError as e:  # refused combinations are raised on every rank before any collective
            res[case] = {"error": str(e)}
    torch.save(res, os.path.join(outdir, f"ds{rank}.pt"))
    engine.shutdown()
