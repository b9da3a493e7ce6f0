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
import contextlib
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import SimpleNamespace as NS

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS for the `equal` part
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import bench_step_dist as dist_bench  # noqa: E402

FULL = NS(tiny=False, archs=("resnet50_imagenet", "resnet18_imagenet"), size=224, batch=64, iters=10, warmup=3,
          mask_arch="resnet50_imagenet",
          backends="ddp,deepspeed", check=NS(arch="resnet18_imagenet", size=224, batch=16, steps=4),
          train=NS(arch="resnet18_imagenet", images=384, size=224, batch=64, steps=30, workers=min(8, os.cpu_count())),
          demo_scale=0.2)
TINY = NS(tiny=True, archs=("resnet20s",), size=16, batch=2, iters=2, warmup=1, backends="ddp", mask_arch="resnet20s",
          check=NS(arch="resnet20s", size=16, batch=4, steps=3),
          train=NS(arch="resnet20s", images=24, size=32, batch=4, steps=3, workers=0), demo_scale=0.0)
TV_ARCH = {"resnet50_imagenet": "resnet50", "resnet18_imagenet": "resnet18"}


def _missing(*modules):
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _median_s(fn, dev, reps, warmup=1):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        _sync(dev)
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


# --- equal, bf16 -------------------------------------------------------------------------------------
def _bip(fused, precision, mode):
    """A BiP step on the one device through bench_step_dist's builder (its `local` backend)."""
    args = NS(arch=mode.check.arch, classes=10, k=0.1, precision=precision, channels_last=True,
              batch=mode.check.batch)
    from bip_dist.engine.dist_env import DistEnv
    return dist_bench.make(("bip", "local", "bip", fused, "fp32"), args, DistEnv())[1]


def _batches(mode, dev):
    g = torch.Generator(device=dev).manual_seed(0)
    c = mode.check

    def one():
        return (torch.randn(c.batch, 3, c.size, c.size, generator=g, device=dev),
                torch.randint(0, 10, (c.batch,), generator=g, device=dev))
    return [(one(), one()) for _ in range(c.steps)]


def part_equal(mode, dev, res):
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        steps = {fused: _bip(fused, "bf16", mode) for fused in (True, False)}
        for b in _batches(mode, dev):
            for s in steps.values():
                s(b)
    finally:
        torch.use_deterministic_algorithms(False)
    a, b = steps[True], steps[False]
    masks = int((a.store.mask != b.store.mask).sum())
    d_s = float((a.store.scores - b.store.scores).abs().max())
    d_w = max(float((p - q).abs().max()) for p, q in zip(a.weights, b.weights))
    res.update(mask_entries_differing=masks, max_abs_score_diff=d_s, max_abs_weight_diff=d_w)
    ok = masks == 0 and d_s <= 1e-5 and d_w <= 1e-5
    return ok, f"{masks} mask entries differ, max |ds| {d_s:.1e}, max |dw| {d_w:.1e} ({mode.check.steps} steps)"


def part_bf16(mode, dev, res):
    runs = {}
    for precision in ("bf16", "fp32"):
        step = _bip(True, precision, mode)
        start = step.store.mask.clone()
        flips = [step(b)["mask_flips"] for b in _batches(mode, dev)]
        runs[precision] = (step.store.mask, int((step.store.mask != start).sum()), float(sum(flips)))
    moved, vs_fp32 = runs["bf16"][1], float((runs["bf16"][0] != runs["fp32"][0]).float().mean())
    res.update(entries_moved_bf16=moved, entries_moved_fp32=runs["fp32"][1], flip_rate_sum_bf16=runs["bf16"][2],
               fraction_differing_from_fp32=vs_fp32, autocast=dev.type == "cuda")
    note = "" if dev.type == "cuda" else " (autocast is CUDA-only: fp32 here)"
    return moved > 0, f"{moved} mask entries moved in {mode.check.steps} steps, {vs_fp32:.2%} differ from fp32{note}"


# --- steps, mask, torchvision -------------------------------------------------------------------------
def part_steps(mode, dev, res):
    backends = [b for b in mode.backends.split(",") if b != "deepspeed" or not _missing("deepspeed")]
    skipped = sorted(set(mode.backends.split(",")) - set(backends))
    warned, rows = False, []
    for arch in mode.archs:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "steps.json"
            cmd = [sys.executable, str(ROOT / "bench" / "bench_step_dist.py"), "--arch", arch, "--size",
                   str(mode.size), "--batch", str(mode.batch), "--iters", str(mode.iters), "--warmup",
                   str(mode.warmup), "--world", "1", "--precision", "bf16", "--channels-last", "--backends",
                   ",".join(backends), "--out", str(out)]
            r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
            print(r.stdout, end="", flush=True)
            if r.returncode:
                raise RuntimeError(f"{' '.join(cmd[1:4])} exited {r.returncode}: {r.stderr.strip()[-400:]}")
            warned |= "Grad strides do not match bucket view strides" in r.stderr
            rows += [{"arch": arch, **row} for row in json.loads(out.read_text())["results"]]
    res.update(rows=rows, ddp_grad_stride_warning=warned, backends_skipped=skipped)
    fused = {r["arch"]: r["ratio_to_dense_ddp"] for r in rows if (r["method"], r["backend"]) == ("bip_fused", "ddp")}
    text = ", ".join(f"{a}: BiP fused {v:.2f}x dense" for a, v in fused.items())
    text += f"; DDP grad-stride warning: {'yes' if warned else 'no'}"
    if skipped:
        text += f"; skipped {', '.join(skipped)} (not installed)"
    return True, text


def _step_row(res, arch, method, backend="ddp"):
    rows = res.get("steps", {}).get("rows", [])
    return next((r for r in rows if (r["arch"], r["method"], r["backend"]) == (arch, method, backend)), None)


def part_mask(mode, dev, res, all_res):
    from bip_dist.models import build_model
    from bip_dist.pruning import ScoreStore, make_prunable
    arch = mode.mask_arch
    model = make_prunable(build_model(arch, 10), "unstructured").to(dev)
    store = ScoreStore(model, 0.1, "unstructured")
    store.init_scores("magnitude")
    store.refresh_mask()
    keep = store.keep_count(store.numel)
    nudge = 1e-4 * torch.randn(store.numel, device=dev, generator=torch.Generator(device=dev).manual_seed(0))

    def refresh():
        store.scores.add_(nudge)  # scores move a little per step, as in training
        store.refresh_mask()
    reps = 3 if mode.tiny else 20
    ms = {"refresh_mask": _median_s(refresh, dev, reps) - _median_s(lambda: store.scores.add_(nudge), dev, reps),
          "abs": _median_s(lambda: store.scores.abs(), dev, reps),
          "topk_unsorted": _median_s(lambda: torch.topk(store.scores.abs(), keep, sorted=False), dev, reps),
          "sort": _median_s(lambda: torch.sort(store.scores.abs()), dev, reps)}
    ms = {k: 1e3 * v for k, v in ms.items()}
    res.update(arch=arch, scores=store.numel, ms=ms)
    row = _step_row(all_res, arch, "bip_fused")
    text = f"{ms['refresh_mask']:.2f} ms for {store.numel / 1e6:.1f} M scores; topk {ms['topk_unsorted']:.2f} ms, " \
           f"sort {ms['sort']:.2f} ms"
    if row:
        res["share_of_bip_fused_step"] = ms["refresh_mask"] / 1e3 / row["median_s"]
        text += f"; {res['share_of_bip_fused_step']:.1%} of the BiP fused step"
    return True, text


def part_torchvision(mode, dev, res, all_res):
    import torchvision
    arch = mode.archs[0]
    tv_arch = TV_ARCH.get(arch, "resnet18")  # tiny mode: only that the code runs
    model = getattr(torchvision.models, tv_arch)(num_classes=10).to(dev).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    x = torch.randn(mode.batch, 3, mode.size, mode.size, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (mode.batch,), device=dev)
    cast = torch.autocast("cuda", dtype=torch.bfloat16) if dev.type == "cuda" else contextlib.nullcontext()

    def step():
        opt.zero_grad(set_to_none=True)
        with cast:
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    plain = _median_s(step, dev, mode.iters, mode.warmup)
    res.update(arch=tv_arch, median_s=plain)
    row = _step_row(all_res, arch, "dense")
    text = f"{tv_arch} {plain:.4f} s/it"
    if row and arch in TV_ARCH:
        res["dense_ddp_over_plain"] = row["median_s"] / plain
        text += f"; dense DDP is {res['dense_ddp_over_plain']:.2f}x that"
    return True, text


# --- train, demo --------------------------------------------------------------------------------------
def _jpegs(mode, tmp):
    from bench_data import make_images
    src = tmp / "jpeg"
    make_images(str(src), mode.train.images)
    make_images(str(tmp / "jpeg_val"), max(10, mode.train.images // 8), seed=1)
    (tmp / "jpeg_val" / "train").rename(src / "val")
    return src


def part_train(mode, dev, res, tmp):
    if _missing("lmdb"):
        return None, "skipped: lmdb not installed (bip_dist.data needs it)"
    from data_prep.cli import main as prep
    t = mode.train
    formats = ["lmdb"] + ([] if _missing("ffcv") or mode.tiny else ["ffcv"])
    prepared = tmp / "prepared"
    assert prep(["folder", "--src", str(_jpegs(mode, tmp)), "--out", str(prepared), "--format", ",".join(formats),
                 "--workers", str(t.workers), "--max-side", "256"]) == 0
    import yaml
    for fmt in formats:
        cfg = {"name": f"gpu_check_{fmt}", "mode": "prune", "trainer": "bip", "out_dir": str(tmp / "runs"),
               "data": {"dataset": "folder", "format": fmt, "root": str(prepared), "batch_size": t.batch,
                        "workers": t.workers, "image_size": t.size},
               "model": {"arch": t.arch}, "prune": {"layer_type": "unstructured", "k": 0.1},
               "train": {"epochs": 1, "max_steps": t.steps, "log_every": 1, "progress": False},
               "dist": {"precision": "bf16", "channels_last": True}, "log": {"tensorboard": False}}
        path = tmp / f"{fmt}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        r = subprocess.run([sys.executable, "-m", "launcher.worker", "--config", str(path)], cwd=ROOT,
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"bip-train ({fmt}) exited {r.returncode}: {r.stderr.strip()[-400:]}")
        result = json.loads(r.stdout.strip().splitlines()[-1])
        logs = [json.loads(line) for line in (Path(result["run_dir"]) / "metrics.jsonl").read_text().splitlines()]
        steps = [rec for rec in logs if rec["kind"] == "train"][1:]  # the first step includes start-up
        wait = sum(rec["time_data"] for rec in steps) / max(1e-9, sum(rec["time_step"] for rec in steps))
        res[fmt] = {"images_per_s": result["train_images_per_s"], "data_wait_share": wait, "steps": result["step"]}
    skipped = "" if "ffcv" in formats else " (ffcv: not installed)" if _missing("ffcv") else " (ffcv: full mode only)"
    return True, "; ".join(f"{f} {v['images_per_s']:.0f} img/s, data wait {v['data_wait_share']:.0%}"
                           for f, v in res.items()) + skipped


def part_demo(mode, dev, res, tmp):
    if mode.tiny:
        return None, "skipped: tiny mode (make demo runs it)"
    if _missing("lmdb"):
        return None, "skipped: lmdb not installed (bip_dist.data needs it)"
    if not list((ROOT / "data" / "digits").glob("*.npz")):
        if _missing("sklearn"):
            return None, "skipped: data/digits missing and scikit-learn not installed (make prep-demo)"
        subprocess.run([sys.executable, "-m", "data_prep", "digits", "--out", "data/digits", "--format", "memory"],
                       cwd=ROOT, check=True, capture_output=True)
    t0 = time.time()
    subprocess.run([sys.executable, "-m", "launcher.demo", "--out-dir", str(tmp / "demo_runs"), "--workers", "1",
                    "--epochs-scale", str(mode.demo_scale)], cwd=ROOT, check=True, capture_output=True)
    summary = json.loads((tmp / "demo_runs" / "demo" / "summary.json").read_text())
    res.update(summary=summary, seconds=time.time() - t0)
    return True, f"top-1 dense {summary['dense_top1']:.1f}, BiP {summary['bip_top1']:.1f}, finetune " \
                 f"{summary['finetune_top1']:.1f} at sparsity {summary['sparsity']:.3f} ({res['seconds']:.0f} s)"


# --- driver -------------------------------------------------------------------------------------------
def run_parts(mode, dev, tmp):
    """Run every part, each isolated: a failure is recorded and the others still run."""
    out = {}
    parts = {"equal": lambda r: part_equal(mode, dev, r), "bf16": lambda r: part_bf16(mode, dev, r),
             "steps": lambda r: part_steps(mode, dev, r), "mask": lambda r: part_mask(mode, dev, r, out),
             "torchvision": lambda r: part_torchvision(mode, dev, r, out),
             "train": lambda r: part_train(mode, dev, r, tmp), "demo": lambda r: part_demo(mode, dev, r, tmp)}
    for name, fn in parts.items():
        res, t0 = {}, time.time()
        try:
            ok, text = fn(res)
            res["status"] = "skipped" if ok is None else "ok" if ok else "FAIL"
        except Exception as e:  # noqa: BLE001 - recorded in the table, and the exit status
            traceback.print_exc()
            res["status"], text = "FAIL", f"{type(e).__name__}: {e}".splitlines()[0][:300]
        res.update(summary=text, seconds=round(time.time() - t0, 1))
        out[name] = res
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
            "mode": "tiny" if mode.tiny else "full", "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.version.cuda, "seconds": round(time.time() - t0, 1), "sizes": _sizes(mode)}
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
    return {"archs": list(mode.archs), "mask_arch": mode.mask_arch, "image": mode.size, "batch": mode.batch, "iters": mode.iters,
            "check": vars(mode.check), "train": vars(mode.train)}


if __name__ == "__main__":
    sys.exit(main())
