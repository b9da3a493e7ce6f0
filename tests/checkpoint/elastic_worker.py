"""torchrun worker for test_elastic: a 2-rank BiP run with ckpt.resume=auto whose rank 1 SIGKILLs itself
at step KILL_AT of the first attempt; torchrun (--max-restarts) restarts both workers, which resume.

usage: torchrun --nproc-per-node 2 --max-restarts 1 elastic_worker.py OUT_DIR KILL_AT (0 = no kill)
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ckpt_helpers as H  # noqa: E402

from bip_dist.engine import make_engine  # noqa: E402
from bip_dist.train.callbacks import Callback  # noqa: E402

out, kill_at = sys.argv[1], int(sys.argv[2])
attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
cfg = H.make_cfg(out, "bip", "ckpt.resume=auto", "train.epochs=3")
engine = make_engine(cfg)


class KillRank1(Callback):
    def on_start(self, state, parts, loaders, run_dir):
        print(f"START rank={engine.rank} attempt={attempt} step={state.step}", flush=True)

    def on_step(self, state, out):
        if kill_at and attempt == 0 and engine.rank == 1 and state.step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)


res = H.run(cfg, engine, callbacks=[KillRank1()])
print(f"RESULT rank={engine.rank} attempt={attempt} step={res['step']}", flush=True)
engine.shutdown()
