"""Per-iteration cost of dense, HYDRA, BiP (fused, three-pass, first-order) on 2 workers, DDP vs DeepSpeed.

Usage: python bench/bench_step_dist.py [--arch resnet20s] [--batch 64] [--iters 12] [--world 2]
       [--precision bf16] [--channels-last] [--backends ddp]
Spawns `--world` workers on 127.0.0.1: gloo with one thread each on CPU, nccl with one GPU each where CUDA
exists (bf16 autocast and channels_last only take effect there). Every method gets its own engine; methods
run round-robin, one iteration each in turn after a barrier, so machine noise hits all alike. Reports the
median seconds per iteration (rank 0), the ratio to dense DDP, and the bytes each rank all-reduces per
iteration split into weight gradients (DDP buckets / ZeRO = parameter bytes) and score gradients (our
reducer), relative to the model's parameter bytes. Writes bench/step_dist.json.
"""

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# (label, backend, trainer, fused, score_grad_dtype)
METHODS = [("dense", "ddp", "dense", True, "fp32"), ("hydra", "ddp", "hydra", True, "fp32"),
           ("bip_fused", "ddp", "bip", True, "fp32"), ("bip_3pass", "ddp", "bip", False, "fp32"),
           ("bip_fused_bf16", "ddp", "bip", True, "bf16"),
           ("bip_first_order", "ddp", "bip_first_order", True, "fp32"),
           ("dense", "deepspeed", "dense", True, "fp32"), ("hydra", "deepspeed", "hydra", True, "fp32"),
           ("bip_fused", "deepspeed", "bip", True, "fp32"), ("bip_3pass", "deepspeed", "bip", False, "fp32"),
           ("bip_first_order", "deepspeed", "bip_first_order", True, "fp32")]


def selected(args):
    wanted = set(args.backends.split(","))
    labels = set(args.methods.split(",")) if args.methods else {m[0] for m in METHODS}
    return [m for m in METHODS if m[1] in wanted and m[0] in labels]


def make(method, args, env):
    """Engine, step and weight-parameter bytes of one method (the model as bip_dist.train.build makes it)."""
    from bip_dist.config.schema import BipConfig, DistConfig, OptimConfig, ScoreOptimConfig
    from bip_dist.models import build_model
    from bip_dist.optim import weight_params
    from bip_dist.pruning import ScoreStore, make_prunable
    from bip_dist.train.registry import TRAINERS, make_step
    label, backend, trainer, fused, gdtype = method
    d = DistConfig(backend=backend, bucket_mb=25.0, score_grad_dtype=gdtype, precision=args.precision,
                   channels_last=args.channels_last, deepspeed_config=str(ROOT / "configs/deepspeed/zero1.json"))
    if backend == "local":  # one process, no group: gpu_check's checks on one device
        from bip_dist.engine import LocalEngine as Engine
    elif backend == "deepspeed":
        from bip_dist.engine.deepspeed_engine import DeepSpeedEngine as Engine
    else:
        from bip_dist.engine.ddp import DDPEngine as Engine
    engine = Engine(d, args.batch, env)
    torch.manual_seed(0)
    model = build_model(args.arch, args.classes)
    prunes = TRAINERS[trainer].prunes
    if prunes:
        make_prunable(model, "unstructured")
    model.to(engine.device)
    if engine.channels_last:
        model.to(memory_format=torch.channels_last)
    store = None
    if prunes:
        store = ScoreStore(model, args.k, "unstructured")
        store.init_scores("magnitude")
        store.refresh_mask()
    step = make_step(trainer, engine, model, store, OptimConfig(lr=0.01),
                     ScoreOptimConfig(lr=0.01, weight_decay=1e-4), BipConfig(fused=fused))
    model.train()
    return engine, step, sum(p.numel() * p.element_size() for p in weight_params(model))


def worker(rank, args, port, q):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(args.world), LOCAL_WORLD_SIZE=str(args.world))
    if not torch.cuda.is_available():
        os.environ["DS_ACCELERATOR"] = "cpu"
        torch.set_num_threads(1)
        from bip_dist.engine import host_memory
        host_memory.keep_freed_memory()  # as bip-train does on the CPU
    import logging
    logging.disable(logging.WARNING)
    from bip_dist.engine.dist_env import DistEnv
    env = DistEnv.from_environ()
    if args.gloo:  # the engines join this group instead of nccl's, which refuses two ranks on one GPU
        dist.init_process_group("gloo", rank=rank, world_size=args.world)
    methods = selected(args)
    built = [make(m, args, env) for m in methods]
    cuda = env.device().startswith("cuda")
    dev = env.device()
    g = torch.Generator(device=dev).manual_seed(rank)

    def batch(two):
        # Made on the device, so a 224-px batch costs no host-to-device copy inside the timed step.
        def one():
            return torch.randn(args.batch, 3, args.size, args.size, generator=g, device=dev), \
                torch.randint(0, args.classes, (args.batch,), generator=g, device=dev)
        return (one(), one()) if two else one()
    times = [[] for _ in methods]
    bytes0 = [e.comm_bytes for e, _, _ in built]
    for it in range(args.warmup + args.iters):
        for i, (engine, step, _) in enumerate(built):
            b = batch(step.two_streams)
            dist.barrier()
            t0 = time.perf_counter()
            step(b)
            if cuda:
                torch.cuda.synchronize()
            if it >= args.warmup:
                times[i].append(time.perf_counter() - t0)
            else:
                bytes0[i] = engine.comm_bytes
    if rank == 0:
        n = args.iters
        res = []
        for m, (engine, step, pbytes), ts, b0 in zip(methods, built, times, bytes0):
            theta = engine.theta_bytes if step.trains_weights else 0
            total = (engine.comm_bytes - b0) / n
            med = statistics.median(ts)
            res.append({"method": m[0], "backend": m[1], "median_s": med,
                        "theta_images_per_s": args.batch * args.world / med,
                        "bytes_per_iter": total, "score_bytes_per_iter": total - theta, "param_bytes": pbytes})
        q.put(res)
    dist.barrier()
    built[0][0].shutdown()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="resnet20s")
    p.add_argument("--batch", type=int, default=64, help="per rank")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--k", type=float, default=0.1)
    p.add_argument("--iters", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32", help="bf16 autocast (GPU only)")
    p.add_argument("--channels-last", action="store_true", help="channels_last layout (GPU only)")
    p.add_argument("--backends", default="ddp,deepspeed", help="comma list of ddp, deepspeed")
    p.add_argument("--methods", default="", help="comma list of method labels (default: all)")
    p.add_argument("--gloo", action="store_true", help="gloo also on GPUs: several workers may share one "
                   "(for checks; timings mean little)")
    p.add_argument("--out", default=str(ROOT / "bench" / "step_dist.json"))
    args = p.parse_args(argv)
    if not selected(args) or not any(m[:2] == ("dense", "ddp") for m in selected(args)):
        p.error(f"--backends {args.backends!r} must include ddp (the baseline is dense DDP)")
    from bip_dist.engine.ddp import free_port
    ctx = mp.get_context("spawn")
    q = ctx.SimpleQueue()
    mp.spawn(worker, args=(args, free_port(), q), nprocs=args.world)
    rows = q.get()
    base = next(r["median_s"] for r in rows if r["method"] == "dense" and r["backend"] == "ddp")
    where = f"{args.world} {'gloo' if args.gloo or not torch.cuda.is_available() else 'nccl'} " \
            f"{'GPU' if torch.cuda.is_available() else 'CPU'} workers"
    print(f"{args.arch} {args.size}x{args.size}, batch {args.batch}/rank, {where}, {args.precision}"
          f"{', channels_last' if args.channels_last else ''}, median of {args.iters} iterations; "
          f"bytes = all-reduced per rank per iteration; img/s = B_theta images per second, all ranks")
    print(f"{'method':16s} {'backend':10s} {'s/iter':>8s} {'x dense DDP':>11s} {'img/s':>8s} {'MB/iter':>8s} "
          f"{'score MB':>9s} {'score/params':>12s}")
    for r in rows:
        r["ratio_to_dense_ddp"] = r["median_s"] / base
        r["score_bytes_over_param_bytes"] = r["score_bytes_per_iter"] / r["param_bytes"]
        print(f"{r['method']:16s} {r['backend']:10s} {r['median_s']:8.3f} {r['ratio_to_dense_ddp']:11.2f} "
              f"{r['theta_images_per_s']:8.1f} "
              f"{r['bytes_per_iter'] / 2 ** 20:8.2f} {r['score_bytes_per_iter'] / 2 ** 20:9.2f} "
              f"{r['score_bytes_over_param_bytes']:12.2f}")
    from bip_dist.engine import host_memory
    meta = {"arch": args.arch, "batch_per_rank": args.batch, "size": args.size, "world": args.world,
            "iters": args.iters, "k": args.k, "precision": args.precision,
            "channels_last": args.channels_last, "device": torch.cuda.get_device_name(0) if
            torch.cuda.is_available() else "cpu", "torch": torch.__version__, "machine": platform.machine(),
            "cpus": os.cpu_count(), "keep_host_memory": not torch.cuda.is_available() and host_memory.enabled(),
            "command": "python bench/bench_step_dist.py " + " ".join(argv or sys.argv[1:])}
    Path(args.out).write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
