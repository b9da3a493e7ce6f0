"""Shared pieces of the run-fault tests (divergence, preemption, hung rank): the in-process tiny runs of
tests/checkpoint (ckpt_helpers, re-exported as H), gloo jobs of forked ranks, a tiny prepared dataset with
bip-train run on it as a forked process or under bip-launch, and strict readers of what a run leaves."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "checkpoint"))
import ckpt_helpers as H  # noqa: E402,F401


def make_data(root, n_train=64, n_val=16):
    """train.npz / val.npz of random 32x32 RGB images in ten classes (the memory format of digits)."""
    os.makedirs(root, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        np.savez(os.path.join(root, f"{split}.npz"), x=rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                 y=np.arange(n, dtype=np.int64) % 10, classes=np.array([str(c) for c in range(10)]))
    return str(root)


def train_args(out_dir, data_root, *sets):
    """bip-train's arguments for the digits config over `data_root`: 8 steps per epoch, logging every step;
    `sets` are further KEY=VALUE overrides."""
    args = ["--config", os.path.join(ROOT, "configs/digits/pretrain.yaml")]
    for s in (f"out_dir={out_dir}", f"data.root={data_root}", "data.batch_size=8", "train.progress=false",
              "train.log_every=1", "log.tensorboard=false", *sets):
        args += ["--set", s]
    return args


def fork_train(args):
    """bip-train `args` in a forked copy of this process (no start-up imports): a multiprocessing Process
    whose exitcode is bip-train's exit status; its stderr is this process's (pytest's capfd sees it)."""
    import multiprocessing
    proc = multiprocessing.get_context("fork").Process(target=_train, args=(args,))
    proc.start()
    return proc


def _train(args):
    from launcher.worker import main
    sys.exit(main(args))


def launch(args):
    """bip-launch (torchrun, one worker) with bip-train `args`, as a new process."""
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.Popen([sys.executable, "-m", "launcher.launch", "--nproc-per-node", "1", *args], cwd=ROOT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def strict_records(path):
    """The JSON lines of `path` as dicts; NaN / Infinity (not JSON) fail the parse."""
    def refuse(token):
        raise ValueError(f"{path}: {token} is not JSON")
    with open(path) as f:
        return [json.loads(line, parse_constant=refuse) for line in f]


def wait_for_step(out_dir, step, running, timeout=60):
    """Block until the run under `out_dir` has logged training step `step`; returns its run folder.
    `running()` says whether the process training it is still alive."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        assert running(), f"the run under {out_dir} ended before step {step}"
        for log in out_dir.rglob("metrics.jsonl"):
            if any(r["kind"] == "train" and r["step"] >= step for r in strict_records(log)):
                return log.parent
        time.sleep(0.1)
    raise TimeoutError(f"no step {step} logged under {out_dir} in {timeout} s")


def error_lines(stderr):
    """stderr without warnings and their source lines."""
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    return [ln for i, ln in enumerate(lines) if "Warning" not in ln and not (i and "Warning" in lines[i - 1])]


def assert_finite_checkpoints(run_dir):
    """Every checkpoint folder and final.pt under `run_dir` holds only finite floating-point tensors."""
    from bip_dist.checkpoint.consolidate import consolidate
    for ck in list(run_dir.glob("checkpoints/step_*")) + list(run_dir.glob("final.pt")):
        for k, v in consolidate(ck).items():
            assert not v.is_floating_point() or torch.isfinite(v).all(), (ck, k)


def spawn(world, fn, *args, join=True):
    """fn(rank, *args) in `world` forked processes joined as one gloo job (forked: no imports to repeat,
    which on a busy CPU saves most of a test's time). join=False returns at once with the processes."""
    import torch.multiprocessing as mp
    ctx = mp.start_processes(_join_then, args=(world, H.free_port(), fn, args), nprocs=world, join=join,
                             start_method="fork")
    return None if join else ctx.processes


def _join_then(rank, world, port, fn, args):
    H.join_as(rank, world, port)
    fn(rank, *args)
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def ranked_run(cfg, callbacks=()):
    """H.run of `cfg` on a fresh engine of this process's rank (the process group is joined once)."""
    from bip_dist.engine import make_engine
    return H.run(cfg, make_engine(cfg), callbacks=callbacks)
