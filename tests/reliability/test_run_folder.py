"""Fault: a run folder already in use or holding another run. A fresh run there refuses to start (its
pruning would delete its own new checkpoints and a later resume would load the old run) unless told to
resume it or, with --overwrite, to move it aside; a second live process is refused by the lock file; a
rerun of a finished stage reports its result without training."""

import fcntl
import json

import pytest

import bip_dist.train.loop as loop
from bip_dist.run_dir import run_dir_for
from tests.helpers import runs
from tests.helpers.cli import bip_train
from tests.helpers.outputs import error_lines

pytestmark = pytest.mark.usefixtures("tiny_models")

DENSE = ("train.epochs=1",)


def _tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.name != ".lock")


def test_fresh_run_refuses_an_earlier_run_and_overwrite_moves_it_aside(tmp_path, capsys):
    assert runs.run(runs.make_cfg(tmp_path, "dense", "log.tensorboard=false", *DENSE), crash_at=5) is None
    run = run_dir_for(runs.make_cfg(tmp_path, "dense", "log.tensorboard=false", *DENSE))
    before = _tree(run)
    capsys.readouterr()
    assert bip_train(tmp_path, "dense", *DENSE) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(run) in lines[0] and "--resume auto" in lines[0] and "--overwrite" in lines[0]
    assert _tree(run) == before  # nothing written, nothing pruned
    assert bip_train(tmp_path, "dense", *DENSE, args=["--overwrite"]) == 0
    old = [p for p in run.parent.iterdir() if p.name.startswith(f".{run.name}.old-")]
    assert len(old) == 1 and _tree(old[0]) == before  # the earlier run, whole, beside the new one
    assert json.loads((run / "result.json").read_text())["step"] == 12


def test_second_process_is_refused_by_the_lock(tmp_path, capsys):
    run = run_dir_for(runs.make_cfg(tmp_path, "dense", "log.tensorboard=false", *DENSE))
    run.mkdir(parents=True)
    with open(run / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("pid 4242 on otherhost since 2030-01-01 00:00:00")
        held.flush()
        capsys.readouterr()
        assert bip_train(tmp_path, "dense", *DENSE) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "pid 4242 on otherhost" in lines[0] and str(run / ".lock") in lines[0]
        assert not (run / "metrics.jsonl").exists() and not (run / "checkpoints").exists()
    # The holder is gone (its lock dropped; the file still names it): the folder is free again.
    assert bip_train(tmp_path, "dense", *DENSE) == 0


def test_rerun_of_a_finished_stage_reports_it(tmp_path, capsys, monkeypatch):
    assert bip_train(tmp_path, "dense", *DENSE) == 0
    run = run_dir_for(runs.make_cfg(tmp_path, "dense", "log.tensorboard=false", *DENSE))
    result = (run / "result.json").read_text()
    monkeypatch.setattr(loop, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    capsys.readouterr()
    assert bip_train(tmp_path, "dense", *DENSE) == 0
    out = capsys.readouterr()
    assert json.loads(out.out.strip().splitlines()[-1]) == json.loads(result)
    assert "finished already" in out.err
    assert (run / "result.json").read_text() == result
