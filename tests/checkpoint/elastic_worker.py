"""torchrun worker for test_elastic: a 2-rank BiP run with ckpt.resume=auto whose rank 1 SIGKILLs itself
at step KILL_AT of the first attempt; torchrun (--max-restarts) restarts both workers, which resume.

usage: torchrun --nproc-per-node 2 --max-restarts 1 -m tests.checkpoint.elastic_worker OUT_DIR KILL_AT
(0 = no kill; PYTHONPATH: the repository root)
"""

import os
import signal
import sys

from bip_dist.engine import make_engine
from bip_dist.train.callbacks import Callback
from tests.helpers import models, runs


class KillRank1(Callback):
    def __init__(self, engine, attempt, kill_at):
        self.engine, self.attempt, self.kill_at = engine, attempt, kill_at

    def on_start(self, state, parts, loaders, run_dir):
        print(f"START rank={self.engine.rank} attempt={self.attempt} step={state.step}", flush=True)

    def on_step(self, state, out):
        if self.kill_at and self.attempt == 0 and self.engine.rank == 1 and state.step == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


def main(out, kill_at):
    attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    with models.registered():
        cfg = runs.make_cfg(out, "bip", "ckpt.resume=auto", "train.epochs=3")
        engine = make_engine(cfg)
        res = runs.run(cfg, engine, callbacks=[KillRank1(engine, attempt, kill_at)])
    print(f"RESULT rank={engine.rank} attempt={attempt} step={res['step']}", flush=True)
    engine.shutdown()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
