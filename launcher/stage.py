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


@dataclass
class Outcome:
    """What one process of a stage returns: the stage's result and whether this is the main rank."""
    result: dict
    is_main: bool


class StageFailed(Exception):
    """A stage stopped on bad input; the message is one line, `rank` the process that raised it."""

    def __init__(self, msg, rank):
        super().__init__(msg)
        self.rank = rank


def run_here(cfg):
    """Train the stage `cfg` in this process (alone, or as one rank of a torchrun job); the engine is
    shut down however it ends. Bad input raises StageFailed."""
    from bip_dist.engine import make_engine
    from bip_dist.train.loop import callbacks_for, train
    engine = make_engine(cfg)
    try:
        result = train(cfg, engine, callbacks=callbacks_for(cfg, engine))
        return Outcome(result, engine.is_main)
    except (ValueError, FileNotFoundError) as e:
        raise StageFailed(str(e), engine.rank) from None
    finally:
        engine.shutdown()


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
    after running it, in this process when asked and nproc is 1, otherwise as a child command."""
    from bip_dist.config import load_config
    from bip_dist.run_dir import run_dir_for
    cfg = load_config(config, overrides)
    done = run_dir_for(cfg) / "result.json"
    if done.is_file():
        return json.loads(done.read_text()), None
    shown = " ".join(o for o in overrides if not o.startswith(("out_dir", "name")))
    print(f"[{tag}] {label or cfg.mode}: {shown}", flush=True)
    t0 = time.time()
    if in_process and nproc == 1:
        run_here(cfg)
    else:
        cmd = stage_command(config, overrides, nproc)
        print(f"[{tag}] $ " + " ".join(cmd), flush=True)
        # One thread per process when several share the cores; a lone process may use them all.
        threads = os.environ.get("OMP_NUM_THREADS", "1" if nproc > 1 else str(os.cpu_count()))
        subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": threads})
    return json.loads(done.read_text()), time.time() - t0
