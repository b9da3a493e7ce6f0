"""Operator errors and stops around a run, each ending in one line and a documented exit status, never a
traceback: an unwritable or too long run folder (also with 2 ranks, and when re-reporting a finished
run), Ctrl-C and a closed terminal, a hung rank's line in the run's own records, a key given twice in a
config file, a run name that leaves out_dir, and a worker under bip-launch that stops."""

import errno
import fcntl
import io
import os
import pty
import select
import signal
import struct
import subprocess
import sys

import pytest

from bip_dist.config import ConfigError, load_config
from bip_dist.run_dir import run_dir_for
from launcher.worker import main as bip_train_main
from tests.helpers import ROOT, cli, outputs, prepared, runs
from tests.helpers.dist import spawn

pytestmark = pytest.mark.usefixtures("tiny_models")  # the forked ranks inherit it

DENSE = ("train.epochs=1",)
LONG = "x" * 300  # one path component longer than any Linux file system allows (255 bytes)


# --- item 8: a run folder that cannot be written -------------------------------------------------------

FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_IMMUTABLE_FL = 0x80086601, 0x40086602, 0x10


def _set_immutable(path, on):
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = struct.unpack("l", fcntl.ioctl(fd, FS_IOC_GETFLAGS, struct.pack("l", 0)))[0]
        flags = flags | FS_IMMUTABLE_FL if on else flags & ~FS_IMMUTABLE_FL
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, struct.pack("l", flags))
    finally:
        os.close(fd)


@pytest.fixture
def read_only():
    """read_only(folder): nothing can be created in `folder` until the test ends: mode 0555, and for root
    (whom modes do not stop) the file system's immutable flag; skips where neither works."""
    made = []

    def make(path):
        os.chmod(path, 0o555)
        made.append(path)
        if os.geteuid() == 0:
            try:
                _set_immutable(path, True)
            except OSError as e:
                pytest.skip(f"cannot make {path} read-only as root ({errno.errorcode.get(e.errno)})")
        try:
            open(os.path.join(path, ".probe"), "w").close()
        except OSError:
            return path
        pytest.skip(f"{path} stays writable")
    yield make
    for path in made:
        if os.geteuid() == 0:
            _set_immutable(path, False)
        os.chmod(path, 0o755)


def _one_line(capsys, *needles):
    lines = outputs.error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def test_name_too_long_is_one_line_exit_2(tmp_path, capsys):
    assert cli.bip_train(tmp_path, "dense", *DENSE, f"name={LONG}") == 2
    run = run_dir_for(runs.make_cfg(tmp_path, "dense", "log.tensorboard=false", *DENSE, f"name={LONG}"))
    _one_line(capsys, str(run), "File name too long", "shorten name or out_dir")


def test_read_only_out_dir_is_one_line_exit_2(tmp_path, capsys, read_only):
    out = tmp_path / "out"
    out.mkdir()
    (out / "c.yaml").touch()  # bip_train's config file (an existing file stays writable)
    read_only(out)
    assert cli.bip_train(out, "dense", *DENSE) == 2
    _one_line(capsys, f"{out / 'ck'}: ", "cannot create the run folder",
              str(run_dir_for(runs.make_cfg(out, "dense", "log.tensorboard=false", *DENSE))),
              "set out_dir to a writable folder")
    assert os.listdir(out) == ["c.yaml"]


def test_finished_run_in_a_read_only_folder_is_one_line_exit_2(tmp_path, capsys, read_only):
    """Re-reporting a finished run needs its lock file; when that cannot be created the line says so and
    where the result is."""
    assert cli.bip_train(tmp_path, "dense", *DENSE) == 0
    run = run_dir_for(runs.make_cfg(tmp_path, "dense", "log.tensorboard=false", *DENSE))
    (run / ".lock").unlink()
    before = sorted(os.listdir(run))
    read_only(run)
    capsys.readouterr()
    assert cli.bip_train(tmp_path, "dense", *DENSE) == 2
    _one_line(capsys, f"{run / '.lock'}: ", "cannot create the lock file of the run folder",
              f"finished run (its result: {run / 'result.json'})")
    assert sorted(os.listdir(run)) == before


def _rank_long_name(rank, out):
    code = cli.bip_train(out, "dense", *DENSE, f"name={LONG}")
    (out / f"code{rank}").write_text(str(code))


def test_name_too_long_with_two_ranks(tmp_path, capfd):
    spawn(2, _rank_long_name, tmp_path, start_method="fork")
    assert [(tmp_path / f"code{r}").read_text() for r in range(2)] == ["2", "2"]
    lines = outputs.error_lines(capfd.readouterr().err)
    assert len(lines) == 1 and lines[0].startswith("bip-train [rank 0]: ") and "File name too long" in lines[0], lines


# --- item 9: Ctrl-C and a closed terminal ---------------------------------------------------------------

@pytest.mark.parametrize("sig,code,kind", [(signal.SIGINT, 130, "interrupted"), (signal.SIGHUP, 75, "preempted")])
def test_sigint_and_sighup_checkpoint_and_stop(tmp_path, capfd, sig, code, kind):
    data = prepared.make_digits_root(tmp_path / "data")
    proc = cli.fork_train(cli.logged_argv(tmp_path, data, "train.epochs=50"))
    run_dir = outputs.wait_for_step(tmp_path, 2, proc.is_alive)
    os.kill(proc.pid, sig)
    proc.join(60)
    err = capfd.readouterr().err
    assert proc.exitcode == code, err[-3000:]
    [line] = outputs.error_lines(err)
    name = signal.Signals(sig).name
    assert line.startswith("bip-train [rank 0]: step ") and f"{name} received; stopped after writing checkpoint" in line
    from bip_dist.checkpoint.layout import Layout
    newest = Layout(run_dir / "checkpoints").newest()
    assert newest is not None and newest.name in line
    last = outputs.strict_records(run_dir / "metrics.jsonl")[-1]
    assert last["kind"] == kind and f"{name} received" in last["error"]


def _train_on_terminal(argv):
    """bip-train `argv` in a forked copy of this process whose terminal is a new pty: (pid, pty master)."""
    pid, master = pty.fork()
    if pid == 0:  # child: never returns into pytest
        code = 70
        try:
            sys.stdout = io.TextIOWrapper(os.fdopen(1, "wb", 0), write_through=True)  # pytest captured them
            sys.stderr = io.TextIOWrapper(os.fdopen(2, "wb", 0), write_through=True)
            code = bip_train_main(argv)
        finally:
            os._exit(code)
    return pid, master


def test_closed_terminal_checkpoints_and_exits_75(tmp_path):
    """The terminal closes mid-run, progress bar on: the run must neither die of SIGHUP nor of the write
    errors a hung-up terminal gives; it checkpoints, records why, and exits 75."""
    data = prepared.make_digits_root(tmp_path / "data")
    pid, master = _train_on_terminal(cli.logged_argv(tmp_path, data, "train.epochs=50", "train.progress=true"))

    def running():  # and keep reading the terminal, as a terminal would
        while select.select([master], [], [], 0)[0]:
            try:
                os.read(master, 65536)
            except OSError:
                break
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    run_dir = outputs.wait_for_step(tmp_path, 2, running)
    os.close(master)  # the terminal closes: the kernel sends SIGHUP, later writes to it fail
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    last = outputs.strict_records(run_dir / "metrics.jsonl")[-1]
    assert status == 75, last
    assert last["kind"] == "preempted" and "SIGHUP received; stopped after writing checkpoint" in last["error"]
    assert (run_dir / "log.txt").read_text().splitlines()[-1].endswith(last["error"].split(": ", 1)[1])


def _ctrl_c_on_rank_1(rank, t):
    from bip_dist.train import preempt
    from bip_dist.train.guards import Interrupted
    from tests.reliability.test_preemption import SignalAt
    preempt.install()
    try:
        runs.ranked_run(runs.make_cfg(t, "bip"), callbacks=[SignalAt(1, signal.SIGINT)] if rank == 1 else [])
    except Interrupted as e:
        (t / f"stop{rank}.txt").write_text(f"{e.exit_code} {e}")


def test_ctrl_c_on_one_of_two_ranks_stops_both_with_130(tmp_path):
    spawn(2, _ctrl_c_on_rank_1, tmp_path, start_method="fork")
    stops = [(tmp_path / f"stop{r}.txt").read_text() for r in range(2)]
    assert stops[0] == ("130 step 2: a peer rank received SIGINT; stopped after writing checkpoint "
                        "step_00000002_ep0000; continue with --resume auto")
    assert stops[1] == stops[0].replace("a peer rank received SIGINT", "SIGINT received")


# --- item 10: a hung rank's line in log.txt and metrics.jsonl -------------------------------------------

def _hung_rank(rank, out):
    from tests.reliability.test_hung_rank import StopSelfAt
    cfg = runs.make_cfg(out, "dense", "dist.timeout_s=3", "ckpt.every_steps=0")
    runs.ranked_run(cfg, callbacks=[StopSelfAt(2, out / "stopped_at")] if rank == 1 else [])


def test_hung_rank_is_recorded_in_the_run_folder(tmp_path, capfd):
    rank0, rank1 = spawn(2, _hung_rank, tmp_path, start_method="fork", join=False)
    try:
        rank0.join(60)
    finally:
        for p in (rank0, rank1):
            p.kill()
            p.join()
    err = capfd.readouterr().err
    assert rank0.exitcode == 69, err[-3000:]
    [line] = outputs.error_lines(err)
    run_dir = run_dir_for(runs.make_cfg(tmp_path, "dense", "dist.timeout_s=3", "ckpt.every_steps=0"))
    last = outputs.strict_records(run_dir / "metrics.jsonl")[-1]
    assert (last["kind"], last["step"], last["error"]) == ("error", 2, f"PeerLost: {line}")
    assert (run_dir / "log.txt").read_text().splitlines()[-1] == f"step=2 epoch=0 stopped by PeerLost: {line}"


# --- item 12: a key given twice in a config file --------------------------------------------------------

def test_duplicate_yaml_key_is_refused(tmp_path, capsys):
    p = tmp_path / "c.yaml"
    p.write_text("name: dup\noptim:\n  lr: 0.1\ntrain:\n  epochs: 2\noptim:\n  momentum: 0.8\n")
    with pytest.raises(ConfigError, match=r"key 'optim' is given twice \(lines 2 and 6\)"):
        load_config(p)
    p.write_text("optim:\n  lr: 0.1\n  momentum: 0.8\n  lr: 0.2\n")
    with pytest.raises(ConfigError, match=r"key 'optim.lr' is given twice \(lines 2 and 4\)"):
        load_config(p)
    assert bip_train_main(["--config", str(p)]) == 2
    _one_line(capsys, str(p), "'optim.lr' is given twice (lines 2 and 4)")


# --- item 13: a name that leaves out_dir ----------------------------------------------------------------

@pytest.mark.parametrize("name", ["../../../x", "a/b", "..", ".hidden", "a\\b", ""])
def test_name_with_path_parts_is_refused(tmp_path, capsys, name):
    out = tmp_path / "a" / "b" / "c"
    out.mkdir(parents=True)
    assert cli.bip_train(out, "dense", *DENSE, f"name={name}") == 2
    _one_line(capsys, f"name = {name!r} must be one folder name")
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a", "a/b", "a/b/c", "a/b/c/c.yaml"]


# --- item 14: a worker under bip-launch that stops ------------------------------------------------------

WORKER = ("import signal, sys, time\n"
          "signal.signal(signal.SIGUSR1, lambda *a: sys.exit(75))\n"
          "print('ready', flush=True)\n"
          "sys.exit(75) if sys.argv[1] == 'now' else time.sleep(60)\n")


def _torchrun(when):
    """launcher.torchrun (bip-launch's agent) over one stand-in worker that exits 75 at once or on SIGUSR1."""
    args = ["--standalone", "--nproc-per-node", "1", "--no-python", sys.executable, "-c", WORKER, when]
    code = f"import sys; from launcher import torchrun; sys.exit(torchrun.run({args!r}))"
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=cli.child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_preempted_worker_is_one_line_with_its_status():
    proc = _torchrun("now")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-3000:]
    assert outputs.error_lines(err) == ["bip-launch: worker rank 0 stopped with exit status 75: preempted; it "
                                        "wrote a checkpoint, continue with --resume auto"]


def test_signal_passed_on_is_one_line_with_the_workers_status():
    proc = _torchrun("wait")
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGUSR1)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-3000:]
    assert outputs.error_lines(err) == ["bip-launch: SIGUSR1 received and passed on to the workers; local worker 0 "
                                        "stopped with exit status 75: preempted; it wrote a checkpoint, continue "
                                        "with --resume auto"]
