"""Compact export of a channel-pruned model (default ResNet-18, 32x32, k = 0.5): params, MACs and inference
latency of the masked and the compact model, measured side by side (alternating) in one run. Writes
bench/compact.json (or --out).

    .venv/bin/python bench/bench_compact.py [--batches 1 32] [--reps 20] [--threads N]
    .venv/bin/python bench/bench_compact.py --arch resnet50_imagenet --size 224 --classes 1000 \
        --batches 1 8 --reps 10 --out bench/compact_resnet50.json
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bip_dist.baselines import apply_ranking, omp_ranking  # noqa: E402
from bip_dist.compact import compact_model, compare, compare_latency  # noqa: E402
from bip_dist.models import build_model  # noqa: E402
from bip_dist.pruning import ScoreStore, make_prunable  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--size", type=int, default=32, help="input side")
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--k", type=float, default=0.5, help="kept fraction of input channels per layer")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    p.add_argument("--out", default="bench/compact.json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    masked = make_prunable(build_model(args.arch, args.classes), "channel")
    store = ScoreStore(masked, args.k, "channel")
    apply_ranking(store, omp_ranking(store))  # keep the channels of largest weight norm (OMP)
    masked.eval()
    t0 = time.perf_counter()
    shape = (3, args.size, args.size)
    compact = compact_model(masked, shape)
    export_s = time.perf_counter() - t0
    x = torch.randn(max(args.batches), *shape)
    with torch.no_grad():
        diff = (masked(x[:8]) - compact(x[:8])).abs().max().item()
    res = {"arch": args.arch, "granularity": "channel", "k": args.k, "input": list(shape),
           "export_seconds": export_s, "max_abs_diff": diff, **compare(masked, compact, shape),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
           "machine": platform.processor() or platform.machine(), "latency": {}}
    for b in args.batches:
        lat = compare_latency({"masked": masked, "compact": compact}, x[:b], reps=args.reps)
        lat["speedup"] = lat["masked"]["median_ms"] / lat["compact"]["median_ms"]
        res["latency"][f"batch{b}"] = lat
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(f"{args.arch} channel k={args.k}: params {res['params_masked']:,} -> {res['params_compact']:,}, "
          f"MACs {res['macs_masked'] / 1e6:.1f}M -> {res['macs_compact'] / 1e6:.1f}M "
          f"(non-zero in masked: {res['macs_masked_nonzero'] / 1e6:.1f}M), max |diff| {diff:.2g}")
    for b in args.batches:
        lat = res["latency"][f"batch{b}"]
        print(f"batch {b:>3}: masked {lat['masked']['median_ms']:8.2f} ms, compact "
              f"{lat['compact']['median_ms']:8.2f} ms, speedup {lat['speedup']:.2f}x")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
