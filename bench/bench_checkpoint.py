"""Checkpoint cost for a ResNet-50-sized BiP state, as a share of one BiP iteration of that model.

Usage: python bench/bench_checkpoint.py [--batch 4] [--size 224] [--reps 3] [--dir /tmp/...]
The state is what a checkpoint of `resnet50_imagenet` (unstructured prunable) holds: weights, scores,
masks, the weight momentum and the score momentum (plus BatchNorm statistics and RNG). Each save is the
real Checkpointer path (DCP write with fsync, rank file, extra.pt, rename, `latest`). Measured:
  sync   - the whole save, which training waits for;
  async  - what training waits for (CPU staging copy + small files), and the background write's total;
  iter   - one BiP iteration (median), alone and while an async write runs in the background.
Prints a table and writes bench/checkpoint.json.
"""

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

from bip_dist.checkpoint.trainer_state import Checkpointer
from bip_dist.config import load_config
from bip_dist.engine import LocalEngine
from bip_dist.engine.host_memory import keep_freed_memory
from bip_dist.train.build import build_parts
from bip_dist.train.state import TrainState


def _iter(parts, batch):
    t = time.perf_counter()
    parts.step(batch)
    return time.perf_counter() - t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=4, help="images per stream in the BiP iteration")
    p.add_argument("--size", type=int, default=224, help="image side")
    p.add_argument("--reps", type=int, default=3, help="saves (and iterations) measured per mode")
    p.add_argument("--dir", default=None, help="where checkpoints are written (default: a temp folder)")
    p.add_argument("--out", default="bench/checkpoint.json")
    args = p.parse_args(argv)
    if not torch.cuda.is_available():
        keep_freed_memory()  # as bip-train does on the CPU
    root = Path(args.dir or tempfile.mkdtemp(prefix="bench_ckpt_"))
    cfg = load_config(None, ["model.arch=resnet50_imagenet", "model.num_classes=1000", "trainer=bip",
                             "mode=prune", "prune.layer_type=unstructured", "prune.k=0.2",
                             "prune.from_scratch=true",
                             f"data.batch_size={args.batch}", "data.dataset=imagenet", "data.format=ffcv",
                             "ckpt.keep_last=1"])
    engine = LocalEngine()
    parts = build_parts(cfg, engine, 1000)
    g = torch.Generator().manual_seed(0)

    def one():
        return (torch.randn(args.batch, 3, args.size, args.size, generator=g),
                torch.randint(0, 1000, (args.batch,), generator=g))
    batch = (one(), one())
    parts.model.train()
    _iter(parts, batch)  # warm-up; also creates the weight momentum buffers
    loaders = SimpleNamespace(train=range(10 ** 6))
    state = TrainState()
    floats = sum(t.numel() for t in parts.model.state_dict().values() if t.is_floating_point())
    floats += sum(s["momentum_buffer"].numel() for s in engine.weight_opt_state()["state"].values())
    floats += parts.score_opt.buf.numel()

    iters = [_iter(parts, batch) for _ in range(args.reps)]
    res = {"sync": [], "async_wait": [], "async_total": [], "iter_during_async": []}
    for mode in ("sync", "async"):
        ck = Checkpointer(cfg, root / mode, engine)
        ck.async_save = mode == "async"
        for _ in range(args.reps):
            state.step += 1
            t0 = time.perf_counter()
            ck._save(state, parts, loaders)
            t1 = time.perf_counter()
            if mode == "sync":
                res["sync"].append(t1 - t0)
                continue
            res["async_wait"].append(t1 - t0)
            res["iter_during_async"].append(_iter(parts, batch))  # training goes on meanwhile
            ck._finish(block=True)
            res["async_total"].append(time.perf_counter() - t0)
        ck.close()
    size = sum(f.stat().st_size for f in (root / "sync").rglob("*") if f.is_file())
    shutil.rmtree(root, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in res.items()}
    it = statistics.median(iters)
    out = {"model": "resnet50_imagenet (unstructured prunable)", "state_floats": floats,
           "checkpoint_bytes": size, "batch": args.batch, "image_size": args.size, "reps": args.reps,
           "iter_s": it, **{f"{k}_s": v for k, v in med.items()},
           "sync_share_of_iter": med["sync"] / it, "async_wait_share_of_iter": med["async_wait"] / it,
           "sync_write_MBps": size / med["sync"] / 2 ** 20,
           "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
           platform.machine(), "cores": os.cpu_count(), "raw": {"iter": iters, **res}}
    rows = [("BiP iteration (batch %d x2, %dpx)" % (args.batch, args.size), it, 1.0),
            ("sync save (training waits)", med["sync"], med["sync"] / it),
            ("async save: training waits", med["async_wait"], med["async_wait"] / it),
            ("async save: background write total", med["async_total"], med["async_total"] / it),
            ("BiP iteration during async write", med["iter_during_async"], med["iter_during_async"] / it)]
    print(f"state: {floats / 1e6:.1f} M floats, checkpoint {size / 2 ** 20:.0f} MiB on disk, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, median of {args.reps}")
    print(f"{'':40s} {'seconds':>9s} {'x iteration':>12s}")
    for name, s, r in rows:
        print(f"{name:40s} {s:9.3f} {r:12.2f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
