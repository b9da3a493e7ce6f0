"""Elastic restart: under `torchrun --max-restarts 1`, a worker killed with SIGKILL mid-run makes torchrun
restart both workers; they resume from the newest checkpoint (ckpt.resume=auto) and finish with the same
final weights, scores, masks and optimizer state as a run never interrupted."""

import subprocess
import sys

from tests.helpers import ROOT, outputs
from tests.helpers.cli import child_env
from tests.helpers.dist import free_port


def _torchrun(out, kill_at):
    # TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1: with the c10d rendezvous, torchrun's workers otherwise share
    # the agent's TCP store across restarts, and the restarted ranks can read the killed attempt's gloo
    # addresses and fail or hang in init_process_group (pytorch/pytorch#135712; about half of our restarts without it).
    env = child_env(PYTHONUNBUFFERED="1", TORCH_DISABLE_SHARE_RDZV_TCP_STORE="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
           "--max-restarts", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{free_port()}",
           "-m", "tests.checkpoint.elastic_worker", str(out), str(kill_at)]
    p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out_text = p.stdout + p.stderr
    assert p.returncode == 0, out_text[-4000:]
    return out_text


def test_sigkilled_worker_restarts_and_finishes(tmp_path):
    ref = _torchrun(tmp_path / "ref", 0)
    assert "attempt=1" not in ref
    # 3 steps/epoch, saves at 2, 3 (epoch end), 4, 6, 8, 9; rank 1 dies at step 7 -> both resume from 6.
    log = _torchrun(tmp_path / "kill", 7)
    assert "START rank=1 attempt=1 step=6" in log and "START rank=0 attempt=1 step=6" in log, log[-4000:]
    assert "RESULT rank=0 attempt=1 step=9" in log, log[-4000:]
    a = outputs.final_state(next((tmp_path / "ref").rglob("final.pt")).parent)
    b = outputs.final_state(next((tmp_path / "kill").rglob("final.pt")).parent)
    outputs.assert_same(a, b)
