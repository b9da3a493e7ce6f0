"""A hung rank: rank 1 stops itself (SIGSTOP) after step 2 of a two-rank gloo run with dist.timeout_s=3;
rank 0, blocked in its next collective (the step-2 checkpoint, or with no checkpoints the gradient
all-reduce of step 3), prints one line naming itself, the collective and the step, and exits 69 within a
few seconds of the timeout instead of waiting for torch's own, a minute later (30 for DCP's)."""

import os
import re
import signal
import time

import pytest

from bip_dist.train.callbacks import Callback
from tests.helpers import outputs, runs
from tests.helpers.dist import spawn

pytestmark = pytest.mark.usefixtures("tiny_models")  # the forked ranks inherit it

TIMEOUT_S = 3


class StopSelfAt(Callback):
    """Freeze this process after step `step`, noting when, as a stopped or swapped-out rank would."""

    def __init__(self, step, mark):
        self.step, self.mark = step, mark

    def on_step(self, state, out):
        if state.step == self.step:
            self.mark.write_text(str(time.time()))
            os.kill(os.getpid(), signal.SIGSTOP)


def _rank(rank, out, every):
    cfg = runs.make_cfg(out, "dense", f"dist.timeout_s={TIMEOUT_S}", f"ckpt.every_steps={every}")
    runs.ranked_run(cfg, callbacks=[StopSelfAt(2, out / "stopped_at")] if rank == 1 else [])


@pytest.mark.parametrize("every,collective", [(2, "a checkpoint save"), (0, "the weight-gradient all-reduce")])
def test_peer_stopped_is_named_within_the_timeout(tmp_path, capfd, every, collective):
    rank0, rank1 = spawn(2, _rank, tmp_path, every, start_method="fork", join=False)
    try:
        rank0.join(60)
        waited = time.time() - float((tmp_path / "stopped_at").read_text())
    finally:
        for p in (rank0, rank1):
            p.kill()  # SIGKILL also ends the stopped rank
            p.join()
    err = capfd.readouterr().err  # the forked ranks write to this process's captured stderr
    assert rank0.exitcode == 69, err[-3000:]
    [line] = outputs.error_lines(err)
    assert re.fullmatch(rf"rank 0: no progress for [34] s in {collective} \(after step 2\); "
                        r"a peer rank is stopped or lost", line), line
    assert TIMEOUT_S <= waited < TIMEOUT_S + 5, waited
