"""One training stage: run in this process, or as a child command (torchrun for several processes), and
reused instead when its result.json exists. bip-train, bip-launch, bip-demo and bip-sweep all start
stages through here.
"""

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

from bip_dist import exit_codes
from bip_dist.run_dir import RunDirError, claim, run_dir_for


@dataclass
class Outcome:
    """What one process of a stage returns: the stage's result, whether this is the main rank, and
    whether the stage had finished before (then nothing was trained)."""
    result: dict
    is_main: bool
    finished_before: bool = False


class StageFailed(Exception):
    """A stage stopped on bad input, a refused run folder or a failed save; the message is one line (empty
    on ranks that only follow rank 0's refusal), `rank` the process that raised it."""
    exit_code = exit_codes.BAD_INPUT

    def __init__(self, msg, rank):
        super().__init__(msg)
        self.rank = rank


class StageStopped(Exception):
    """A stage that run_or_reuse started did not finish: a one-line message naming it, and the exit status
    (bip_dist.exit_codes) its caller should end with, so a sweep or the demo stops the way bip-train would."""

    def __init__(self, msg, code):
        super().__init__(msg)
        self.code = code


_GO, _FINISHED, _REFUSED = 0, 1, 2


def _claim_on_main(cfg, engine, overwrite):
    """Rank 0 claims the run folder (bip_dist.run_dir.claim); every rank learns the verdict."""
    import torch
    lock, result, error = None, None, None
    if engine.is_main:
        try:
            lock, result = claim(cfg, overwrite)
        except RunDirError as e:
            error = e
    code = _REFUSED if error else _FINISHED if result is not None else _GO
    verdict = int(engine.all_reduce_sum(torch.tensor([code if engine.is_main else 0], device=engine.device)))
    if verdict == _REFUSED:
        raise StageFailed(str(error) if error else "", engine.rank)
    if verdict == _FINISHED and result is None:
        result = json.loads((run_dir_for(cfg) / "result.json").read_text())
    return lock, result


def run_here(cfg, overwrite=False):
    """Train the stage `cfg` in this process (alone, or as one rank of a torchrun job) while holding its
    run folder (bip_dist.run_dir.claim); a finished stage is reported, not retrained. The engine is shut
    down and the folder let go however it ends; bad input and failed saves raise StageFailed."""
    from bip_dist.checkpoint.io import SaveFailed
    from bip_dist.engine import make_engine
    from bip_dist.train.loop import callbacks_for, train
    engine = make_engine(cfg)
    lock = None
    try:
        lock, done = _claim_on_main(cfg, engine, overwrite)
        if done is not None:
            return Outcome(done, engine.is_main, finished_before=True)
        result = train(cfg, engine, callbacks=callbacks_for(cfg, engine))
        return Outcome(result, engine.is_main)
    except (ValueError, FileNotFoundError, SaveFailed) as e:
        raise StageFailed(str(e), engine.rank) from None
    finally:
        if lock is not None:
            lock.release()
        engine.shutdown()


def _stop_if_requested(name):
    """StageStopped when a stop signal reached this process (a sweep or the demo) before stage `name`:
    a stage run as a child command would not see it."""
    from bip_dist.train import preempt
    why = preempt.requested()
    if why:
        code = exit_codes.INTERRUPTED if preempt.request_code() == preempt.INTERRUPT else exit_codes.PREEMPTED
        raise StageStopped(f"{name}: not started: {why} received", code)


def torchrun_command(worker_args, nproc, nnodes=1, endpoint="", rdzv_id="bip", max_restarts=0,
                     python=sys.executable):
    """`python -m torch.distributed.run ... -m launcher.worker WORKER_ARGS` as a list: a local rendezvous
    on a free port for one node, c10d at `endpoint` for several."""
    cmd = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if max_restarts:
        cmd += ["--max-restarts", str(max_restarts)]
    if nnodes == 1 and not endpoint:
        cmd.append("--standalone")  # local rendezvous on a free port: no host/port to pick
    else:
        if not endpoint:
            raise ValueError("--nnodes > 1 needs --rdzv-endpoint HOST:PORT (or --slurm)")
        cmd += ["--nnodes", str(nnodes), "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint,
                "--rdzv-id", str(rdzv_id)]
    return cmd + ["-m", "launcher.worker", *worker_args]


def stage_command(config, overrides, nproc, python=sys.executable):
    """The bip-train command of one stage: the worker itself for one process, under torchrun for more."""
    args = ["--config", str(config), *[a for o in overrides for a in ("--set", o)]]
    if nproc > 1:
        return torchrun_command(args, nproc, python=python)
    return [python, "-m", "launcher.worker", *args]


def run_or_reuse(config, overrides, nproc=1, in_process=False, tag="stage", label=None):
    """(result, seconds) of the stage: its result.json when it exists (seconds None, nothing printed), else
    after running it (resuming its own checkpoints, if any), in this process when asked and nproc is 1,
    otherwise as a child command."""
    from bip_dist.config import load_config
    if not any(o.startswith("ckpt.resume=") for o in overrides):
        overrides = [*overrides, "ckpt.resume=auto"]  # an interrupted stage continues where it stopped
    cfg = load_config(config, overrides)
    done = run_dir_for(cfg) / "result.json"
    if done.is_file():
        return json.loads(done.read_text()), None
    name = label or cfg.mode
    _stop_if_requested(name)
    shown = " ".join(o for o in overrides if not o.startswith(("out_dir", "name", "ckpt.resume")))
    print(f"[{tag}] {name}: {shown}", flush=True)
    t0 = time.time()
    if in_process and nproc == 1:
        from bip_dist.train.guards import RunStopped
        try:
            run_here(cfg)
        except (StageFailed, RunStopped) as e:
            raise StageStopped(f"{name}: {e}", e.exit_code) from None
    else:
        cmd = stage_command(config, overrides, nproc)
        print(f"[{tag}] $ " + " ".join(cmd), flush=True)
        # One thread per process when several share the cores; a lone process may use them all.
        threads = os.environ.get("OMP_NUM_THREADS", "1" if nproc > 1 else str(os.cpu_count()))
        rc = subprocess.run(cmd, env={**os.environ, "OMP_NUM_THREADS": threads}).returncode
        if rc:  # the stage printed its own one-line reason above
            raise StageStopped(f"{name}: stopped with exit status {rc}; its reason is printed above", rc)
    return json.loads(done.read_text()), time.time() - t0
