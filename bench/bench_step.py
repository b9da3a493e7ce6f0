"""Per-iteration cost of dense SGD, HYDRA, BiP fused, BiP three-pass, BiP as the reference preset runs it
and first-order BiP, side by side.

Usage: python bench/bench_step.py [--models resnet20s resnet18] [--batch 64] [--iters 15] [--methods ...]
Prints a table (median seconds per iteration, ratio to dense, share of the BiP step spent on the mask)
and writes bench/step.json. Methods run round-robin, one iteration each in turn, so that machine noise
hits all of them alike.
"""

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from bip_dist.config.schema import BipConfig, OptimConfig, PruneConfig, ScoreOptimConfig
from bip_dist.engine import LocalEngine
from bip_dist.engine.host_memory import keep_freed_memory
from bip_dist.models import build_model
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.registry import TRAINERS, make_step

# label -> (trainer, bip.fused, reference). reference: the step of configs/*/bip_reference.yaml (shared scores,
# prune.kept_count: reference with the reference's tie order and IG rounding, both decays 1e-4).
METHODS = {"dense": ("dense", True, False), "hydra": ("hydra", True, False), "bip_fused": ("bip", True, False),
           "bip_3pass": ("bip", False, False), "bip_reference": ("bip", False, True),
           "bip_first_order": ("bip_first_order", True, False)}


def method_step(method, arch, k=0.1):
    trainer, fused, reference = METHODS[method]
    torch.manual_seed(0)
    model = build_model(arch, 10)
    store = None
    if TRAINERS[trainer].prunes:
        make_prunable(model, "unstructured")
        # The configs' default formulation (docs/sparsity.md), resolved as build_parts does; the reference
        # row keeps the reference's shared scores and global ranking.
        prune = PruneConfig(layer_type="unstructured", score_init="shared" if reference else "magnitude")
        store = ScoreStore(model, k, "unstructured", "reference" if reference else "round",
                           prune.resolved_scope, prune.budget)
        store.init_scores(prune.score_init)
        store.refresh_mask()
    wd = 1e-4 if reference else 0.0
    step = make_step(trainer, LocalEngine(), model, store, OptimConfig(lr=0.01),
                     ScoreOptimConfig(lr=0.1, weight_decay=wd), BipConfig(fused=fused))
    model.train()
    return step


def batch_for(step, batch, size):
    x, y = torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))
    if step.two_streams:
        return ((x, y), (torch.randn(batch, 3, size, size), torch.randint(0, 10, (batch,))))
    return (x, y)


def bench_model(arch, batch, iters, warmup, size=32, log_every=20, methods=tuple(METHODS)):
    steps = {m: method_step(m, arch) for m in methods}
    batches = {m: batch_for(s, batch, size) for m, s in steps.items()}
    times = {m: [] for m in methods}
    mask_share = []
    for i in range(warmup + iters):
        for m in methods:
            if m != "dense":
                steps[m].train_mode()
            steps[m].engine.logged_step = (i + 1) % log_every == 0  # as the training loop sets it
            t0 = time.perf_counter()
            out = steps[m](batches[m])
            dt = time.perf_counter() - t0
            if i >= warmup:
                times[m].append(dt)
                if m == "bip_fused":
                    mask_share.append(out["time_mask"] / dt)
    med = {m: statistics.median(v) for m, v in times.items()}
    n_scores = next(s.store.numel for s in steps.values() if s.store is not None)
    return {"arch": arch, "batch": batch, "input": f"{size}x{size}", "prunable_weights": n_scores,
            "median_s": med, "ratio_to_dense": {m: med[m] / med["dense"] for m in methods},
            "bip_fused_mask_share": statistics.median(mask_share) if mask_share else None}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet20s", "resnet18"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--log-every", type=int, default=20, help="train.log_every: the steps that compute and "
                   "time diagnostics, as in training (default: the config default)")
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS),
                   help="the rows to run (dense, the baseline of the ratios, always runs)")
    p.add_argument("--out", default="bench/step.json")
    args = p.parse_args(argv)
    methods = [m for m in METHODS if m == "dense" or m in args.methods]
    host_memory = not torch.cuda.is_available() and keep_freed_memory()  # as bip-train does on the CPU
    rows = [bench_model(a, args.batch, args.iters, args.warmup, log_every=args.log_every, methods=methods)
            for a in args.models]
    print(f"\n{'model':<11}{'method':<16}{'median s/it':>12}{'x dense':>9}")
    for r in rows:
        for m in methods:
            print(f"{r['arch']:<11}{m:<16}{r['median_s'][m]:>12.4f}{r['ratio_to_dense'][m]:>9.2f}")
        if r["bip_fused_mask_share"] is not None:
            print(f"{r['arch']:<11}{'mask share of the BiP fused step:':<38}"
                  f"{100 * r['bip_fused_mask_share']:>6.2f}%")
    res = {"machine": {"cpu_threads": torch.get_num_threads(), "torch": torch.__version__,
                       "platform": platform.platform(),
                       "keep_host_memory": host_memory}, "batch_per_stream": args.batch,
           "log_every": args.log_every, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
