"""The parts of `make gpu-check` (bench/gpu_check.py), each `part(mode, dev, res, ...) -> (ok, summary)`:
ok is True / False, or None when the part was skipped; numbers go into `res` (bench/gpu.json)."""

import contextlib
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace as NS

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]
import bench_step_dist as dist_bench  # noqa: E402

TV_ARCH = {"resnet50_imagenet": "resnet50", "resnet18_imagenet": "resnet18"}


def missing(*modules):
    """The modules of `modules` that are not installed."""
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
    return ok, f"{masks} mask entries differ, max |ds| {d_s:.1e}, max |dw| {d_w:.1e} " \
               f"({mode.check.steps} steps)"


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
    return moved > 0, f"{moved} mask entries moved in {mode.check.steps} steps, {vs_fp32:.2%} differ from " \
                      f"fp32{note}"


# --- steps, mask, torchvision -------------------------------------------------------------------------
def part_steps(mode, dev, res):
    backends = [b for b in mode.backends.split(",") if b != "deepspeed" or not missing("deepspeed", "pydantic")]
    skipped = sorted(set(mode.backends.split(",")) - set(backends))
    rows, stderr = [], ""
    for arch in mode.archs:
        got, err = _bench_steps(arch, mode.size, mode.batch, mode.iters, mode.warmup, ",".join(backends),
                                *mode.step_workers)
        rows, stderr = rows + [{"arch": arch, **row} for row in got], stderr + err
    not_run = ""
    if mode.step_workers == ():
        # DDP wraps nothing in one process: its gradient layout is checked with two gloo workers sharing
        # the device, on a model with 1x1 convolutions, through a path that replaces weight gradients
        # (the three-pass step). Its failure leaves the rows above standing.
        try:
            stderr += _bench_steps(mode.check.arch, 64, 2, 1, 1, "ddp", "--world", "2", "--gloo",
                                   "--methods", "dense,bip_3pass")[1]
        except RuntimeError as e:
            not_run = str(e)[:200]
    warned = None if not_run else "Grad strides do not match bucket view strides" in stderr
    res.update(rows=rows, ddp_grad_stride_warning=warned, backends_skipped=skipped)
    ratio = {(r["arch"], r["method"]): r["ratio_to_dense_ddp"] for r in rows if r["backend"] == "ddp"}
    text = ", ".join(f"{a}: BiP fused {ratio[a, 'bip_fused']:.2f}x, first-order {ratio[a, 'bip_first_order']:.2f}x "
                     f"dense" for a in mode.archs)
    text += f"; DDP layout check did not run ({not_run})" if not_run else \
        f"; DDP grad-stride warning: {'yes' if warned else 'no'}"
    if skipped:
        text += f"; skipped {', '.join(skipped)} (not installed)"
    return True, text


def _bench_steps(arch, size, batch, iters, warmup, backends, *more):
    """bench_step_dist.py's rows (bf16, channels_last; one worker unless `more` says otherwise) and its
    stderr."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "steps.json"
        cmd = [sys.executable, str(ROOT / "bench" / "bench_step_dist.py"), "--arch", arch, "--size", str(size),
               "--batch", str(batch), "--iters", str(iters), "--warmup", str(warmup), "--world", "1",
               "--precision", "bf16", "--channels-last", "--backends", backends, "--out", str(out), *more]
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        print(r.stdout, end="", flush=True)
        if r.returncode:
            raise RuntimeError(f"bench_step_dist.py --arch {arch} exited {r.returncode}: "
                               f"{r.stderr.strip()[-400:]}")
        return json.loads(out.read_text())["results"], r.stderr


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
    nudge_s = _median_s(lambda: store.scores.add_(nudge), dev, reps)
    ms = {"refresh_mask": _median_s(refresh, dev, reps) - nudge_s,
          "abs": _median_s(lambda: store.scores.abs(), dev, reps),
          "topk_unsorted": _median_s(lambda: torch.topk(store.scores.abs(), keep, sorted=False), dev, reps),
          "sort": _median_s(lambda: torch.sort(store.scores.abs()), dev, reps)}
    ms = {k: 1e3 * v for k, v in ms.items()}
    res.update(arch=arch, scores=store.numel, ms=ms)
    row = _step_row(all_res, arch, "bip_fused")
    text = f"{ms['refresh_mask']:.2f} ms for {store.numel / 1e6:.1f} M scores; " \
           f"topk {ms['topk_unsorted']:.2f} ms, sort {ms['sort']:.2f} ms"
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
    from data_prep.cli import main as prep
    t = mode.train
    formats = ["lmdb"] + ([] if missing("ffcv") or mode.tiny else ["ffcv"])
    prepared = tmp / "prepared"
    assert prep(["folder", "--src", str(_jpegs(mode, tmp)), "--out", str(prepared), "--format", ",".join(formats),
                 "--workers", str(t.workers), "--max-side", "256"]) == 0
    import yaml
    for fmt in formats:
        cfg = {"name": f"gpu_check_{fmt}", "mode": "prune", "trainer": "bip", "out_dir": str(tmp / "runs"),
               "data": {"dataset": "folder", "format": fmt, "root": str(prepared), "batch_size": t.batch,
                        "workers": t.workers, "image_size": t.size},
               "model": {"arch": t.arch}, "prune": {"layer_type": "unstructured", "k": 0.1, "from_scratch": True},
               "train": {"epochs": 1, "max_steps": t.steps, "log_every": 1, "progress": False},
               "dist": {"precision": "bf16", "channels_last": True}, "log": {"tensorboard": False}}
        path = tmp / f"{fmt}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        r = subprocess.run([sys.executable, "-m", "launcher.worker", "--config", str(path)], cwd=ROOT,
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"bip-train ({fmt}) exited {r.returncode}: {r.stderr.strip()[-400:]}")
        run_dir = Path(json.loads(r.stdout.strip().splitlines()[-1])["run_dir"])
        logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        # Steady state: the first steps carry worker start-up, cuDNN autotuning and FFCV's compilation.
        steps = [rec for rec in logs if rec["kind"] == "train"][1 if mode.tiny else 5:]
        busy = sum(rec["time_step"] for rec in steps)
        res[fmt] = {"images_per_s": sum(rec["images_per_s"] * rec["time_step"] for rec in steps) / busy,
                    "data_wait_share": sum(rec["time_data"] for rec in steps) / busy, "steps_measured": len(steps)}
    skipped = "" if "ffcv" in formats else " (ffcv: not installed)" if missing("ffcv") else \
        " (ffcv: full mode only)"
    return True, "; ".join(f"{f} {v['images_per_s']:.0f} img/s, data wait {v['data_wait_share']:.0%}"
                           for f, v in res.items()) + skipped


def part_demo(mode, dev, res, tmp):
    if mode.tiny:
        return None, "skipped: tiny mode (make demo runs it)"
    if not list((ROOT / "data" / "digits").glob("*.npz")):
        if missing("sklearn"):
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
