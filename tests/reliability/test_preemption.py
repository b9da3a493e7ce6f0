"""Preemption: on SIGTERM / SIGUSR1 every rank finishes its step, they write one checkpoint together, the
run records `kind: preempted` and bip-train exits 75; `--resume auto` then ends bitwise equal to the run
that was never interrupted. Under bip-launch, torchrun passes SIGUSR1 on to the workers too."""

import os
import signal

import pytest

from bip_dist.checkpoint.layout import Layout
from bip_dist.train import preempt
from bip_dist.train.callbacks import Callback
from bip_dist.train.guards import Preempted
from tests.helpers import cli, outputs, prepared, runs
from tests.helpers.dist import spawn

pytestmark = pytest.mark.usefixtures("tiny_models")


class SignalAt(Callback):
    """Send this process `sig` while it logs step `step` (between two steps, as a scheduler might)."""

    def __init__(self, step, sig=signal.SIGUSR1):
        self.step, self.sig = step, sig

    def on_step(self, state, out):
        if state.step == self.step:
            os.kill(os.getpid(), self.sig)


@pytest.fixture
def catching():
    """bip-train's signal handlers for the test, the pytest process's own back afterwards."""
    previous = preempt.install()
    yield
    preempt.restore(previous)


_REF = {}


def reference(tmp_path_factory):
    if "bip" not in _REF:
        _REF["bip"] = outputs.final_state(runs.run(runs.make_cfg(tmp_path_factory.mktemp("ref"), "bip"))["run_dir"])
    return _REF["bip"]


# bip on the fake data: 6 steps per epoch, 2 epochs, a checkpoint every 2 steps. A signal during step 3
# stops after step 4 (mid-epoch, its own checkpoint); one during step 5 after step 6, the epoch's end.
@pytest.mark.parametrize("signal_at,stop", [(3, 4), (5, 6)])
def test_one_rank_preempted_resumes_bitwise(tmp_path, tmp_path_factory, catching, signal_at, stop):
    with pytest.raises(Preempted) as info:
        runs.run(runs.make_cfg(tmp_path, "bip"), callbacks=[SignalAt(signal_at)])
    folder = f"step_{stop:08d}_ep{stop // 6:04d}"
    assert str(info.value) == (f"step {stop}: SIGUSR1 received; stopped after writing checkpoint {folder}; "
                               f"continue with --resume auto")
    run_dir = next(tmp_path.rglob("config.yaml")).parent
    assert Layout(run_dir / "checkpoints").newest().name == folder
    last = outputs.strict_records(run_dir / "metrics.jsonl")[-1]
    assert (last["kind"], last["step"]) == ("preempted", stop) and "SIGUSR1 received" in last["error"]
    preempt.restore({})  # the resumed run is a new process: no request pending
    res = runs.run(runs.make_cfg(tmp_path, "bip", "ckpt.resume=auto"))
    outputs.assert_same(reference(tmp_path_factory), outputs.final_state(res["run_dir"]))


def _two_ranks(rank, t):
    """A: uninterrupted. B: rank 1 alone gets SIGUSR1 during step 1; both stop after step 2; resumed."""
    preempt.install()
    runs.ranked_run(runs.make_cfg(t / "A", "bip"))
    try:
        runs.ranked_run(runs.make_cfg(t / "B", "bip"), callbacks=[SignalAt(1)] if rank == 1 else [])
    except Preempted as e:
        (t / f"stop{rank}.txt").write_text(str(e))
    preempt.restore({})
    runs.ranked_run(runs.make_cfg(t / "B", "bip", "ckpt.resume=auto"))


def test_two_ranks_stop_together_and_resume_bitwise(tmp_path):
    spawn(2, _two_ranks, tmp_path, start_method="fork")
    stops = [(tmp_path / f"stop{r}.txt").read_text() for r in range(2)]
    assert stops[0] == ("step 2: a peer rank received SIGTERM or SIGUSR1; stopped after writing checkpoint "
                        "step_00000002_ep0000; continue with --resume auto")
    assert stops[1] == stops[0].replace("a peer rank received SIGTERM or SIGUSR1", "SIGUSR1 received")
    final = [outputs.final_state(next((tmp_path / x).rglob("final.pt")).parent) for x in "AB"]
    outputs.assert_same(*final)


def test_bip_train_sigterm_checkpoints_and_exits_75(tmp_path, capfd):
    data = prepared.make_digits_root(tmp_path / "data")
    proc = cli.fork_train(cli.logged_argv(tmp_path, data, "train.epochs=50"))
    run_dir = outputs.wait_for_step(tmp_path, 2, proc.is_alive)
    proc.terminate()  # SIGTERM
    proc.join(60)
    err = capfd.readouterr().err
    assert proc.exitcode == 75, err[-3000:]
    [line] = outputs.error_lines(err)
    assert line.startswith("bip-train [rank 0]: step ") and "SIGTERM received; stopped after writing checkpoint" in line
    last = outputs.strict_records(run_dir / "metrics.jsonl")[-1]
    assert last["kind"] == "preempted" and Layout(run_dir / "checkpoints").newest().name in line


def test_bip_launch_passes_sigusr1_to_the_workers(tmp_path):
    """torchrun by default dies of SIGUSR1 and leaves its workers running; bip-launch makes it forward the
    signal, and exits with the worker's status after one line (tests/reliability/test_cli_faults.py)."""
    data = prepared.make_digits_root(tmp_path / "data")
    proc = cli.launch(cli.logged_argv(tmp_path, data, "train.epochs=50"))
    run_dir = outputs.wait_for_step(tmp_path, 2, lambda: proc.poll() is None)
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 75, err[-3000:]
    assert outputs.error_lines(err)[-1].startswith("bip-launch: SIGUSR1 received and passed on to the workers; "
                                                   "local worker 0 stopped with exit status 75: preempted"), err
    last = outputs.strict_records(run_dir / "metrics.jsonl")[-1]
    assert last["kind"] == "preempted" and "SIGUSR1 received" in last["error"], err[-3000:]
    assert Layout(run_dir / "checkpoints").newest() is not None
