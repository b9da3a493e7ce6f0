"""`make gpu-check`: the first thing to run on a machine with one GPU (under 5 minutes on one H100).

Each part is a row of the printed table and a key of bench/gpu.json:
  equal        BiP fused and three-pass on the device from the same start and batches: same masks, weights,
               scores (deterministic kernels)
  bf16         bf16 autocast moves the mask (score gradients survive the low precision)
  steps        s/iteration of dense, HYDRA, BiP fused and three-pass: ResNet-50 and ResNet-18 at 224, bf16,
               channels_last, DDP and DeepSpeed, one process (bench/bench_step_dist.py)
  mask         the mask refresh alone, beside torch.topk and torch.sort of the same |scores|
  torchvision  a plain torchvision ResNet-50 step (autocast bf16, channels_last, SGD) beside dense DDP
  train        a short bip-train on generated JPEGs through LMDB (and FFCV): images/s, data-wait share
  demo         the digits demo with shortened stages
Without CUDA, or with --tiny, the same code runs at tiny sizes on the CPU (`make test` does, so the script
keeps working). Parts whose packages are missing are skipped and say so. Exit status 1 if a part failed.
"""

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace as NS

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS for the `equal` part
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpu_parts as P  # noqa: E402

ROOT = P.ROOT

# step_workers: extra bench_step_dist.py arguments of the step rows. Tiny: two gloo workers, so that DDP
# really runs (the rows of one process are what bip-train runs on one GPU: no DDP).
FULL = NS(tiny=False, archs=("resnet50_imagenet", "resnet18_imagenet"), size=224, batch=64, iters=10, warmup=3,
          backends="ddp,deepspeed", step_workers=(), mask_arch="resnet50_imagenet",
          check=NS(arch="resnet18_imagenet", size=224, batch=16, steps=4),
          train=NS(arch="resnet18_imagenet", images=384, size=224, batch=64, steps=30,
                   workers=min(8, os.cpu_count())),
          demo_scale=0.2)
TINY = NS(tiny=True, archs=("resnet20s",), size=16, batch=2, iters=2, warmup=1, backends="ddp",
          step_workers=("--world", "2", "--gloo"), mask_arch="resnet20s",
          check=NS(arch="resnet20s", size=16, batch=4, steps=3),
          train=NS(arch="resnet20s", images=24, size=32, batch=4, steps=3, workers=0), demo_scale=0.0)


# --- driver -------------------------------------------------------------------------------------------
def run_parts(mode, dev, tmp):
    """Run every part, each isolated: a failure is recorded and the others still run."""
    out = {}
    parts = {"equal": lambda r: P.part_equal(mode, dev, r), "bf16": lambda r: P.part_bf16(mode, dev, r),
             "steps": lambda r: P.part_steps(mode, dev, r), "mask": lambda r: P.part_mask(mode, dev, r, out),
             "torchvision": lambda r: P.part_torchvision(mode, dev, r, out),
             "train": lambda r: P.part_train(mode, dev, r, tmp), "demo": lambda r: P.part_demo(mode, dev, r, tmp)}
    for name, fn in parts.items():
        res, t0 = {}, time.time()
        try:
            if P.missing("lmdb") and name == "train":
                raise ModuleNotFoundError("the LMDB loader needs lmdb", name="lmdb")
            ok, text = fn(res)
            res["status"] = "skipped" if ok is None else "ok" if ok else "FAIL"
        except ModuleNotFoundError as e:  # e.g. DeepSpeed without pydantic
            res["status"], text = "skipped", f"skipped: {e.name} not installed"
        except Exception as e:  # noqa: BLE001 - recorded in the table, and the exit status
            traceback.print_exc()
            res["status"], text = "FAIL", f"{type(e).__name__}: {e}".splitlines()[0][:300]
        res.update(summary=text, seconds=round(time.time() - t0, 1))
        out[name] = res
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()  # the next part's subprocesses share the GPU
        print(f"[gpu-check] {name}: {res['status']} ({res['seconds']} s)", flush=True)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true", help="tiny sizes (automatic without CUDA)")
    p.add_argument("--out", default=str(ROOT / "bench" / "gpu.json"))
    args = p.parse_args(argv)
    cuda = torch.cuda.is_available()
    mode = TINY if args.tiny or not cuda else FULL
    dev = torch.device("cuda:0" if cuda else "cpu")
    if not cuda:  # tiny CPU ops: threads only wait for each other, and much more so on a busy machine
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # the bip-train and benchmark subprocesses
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        parts = run_parts(mode, dev, Path(tmp))
    meta = {"device": torch.cuda.get_device_name(0) if cuda else f"cpu ({os.cpu_count()} cores)",
            "mode": "tiny" if mode.tiny else "full", "torch": torch.__version__,
            "python": platform.python_version(), "cuda": torch.version.cuda, "seconds": round(time.time() - t0, 1),
            "sizes": _sizes(mode)}
    print(f"\ngpu-check on {meta['device']}, torch {meta['torch']}, {meta['mode']} mode, {meta['seconds']:.0f} s")
    print(f"{'part':<12} {'result':<8} detail")
    for name, res in parts.items():
        print(f"{name:<12} {res['status']:<8} {res['summary']}")
    for row in parts["steps"].get("rows", []):
        print(f"{'  ' + row['arch']:<24} {row['method']:<15} {row['backend']:<10} {row['median_s']:8.4f} s/it "
              f"{row['ratio_to_dense_ddp']:6.2f}x dense DDP")
    Path(args.out).write_text(json.dumps({"meta": meta, "parts": parts}, indent=2))
    print(f"wrote {args.out}")
    return 1 if any(r["status"] == "FAIL" for r in parts.values()) else 0


def _sizes(mode):
    return {"archs": list(mode.archs), "mask_arch": mode.mask_arch, "image": mode.size, "batch": mode.batch,
            "iters": mode.iters, "check": vars(mode.check), "train": vars(mode.train)}


if __name__ == "__main__":
    sys.exit(main())
