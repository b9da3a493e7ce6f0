"""A crash or kill during a save leaves the previous checkpoint loadable and `latest` naming it; partial
folders are never read and are cleaned at the next start; pointers, pruning and the metadata reader."""

import os
import pickle
import signal
import subprocess
import sys

import pytest
import torch

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.consolidate import consolidate
from bip_dist.checkpoint.layout import Layout
from tests.helpers import ROOT, outputs, runs
from tests.helpers.cli import child_env

pytestmark = pytest.mark.usefixtures("tiny_models")


def _layout(tmp_path):
    return Layout(next(tmp_path.rglob("checkpoints")))


def _check_survivor(ck, want):
    assert ck.read_pointer("latest") == want
    assert ck.newest().name == want
    assert consolidate(ck.newest())["conv1.scores"].numel() > 0  # loadable
    # The torn save's folder holds all its shards yet stays invisible: only the rename publishes.
    assert list(ck.root.glob(".step_*"))


def test_failed_save_keeps_previous(tmp_path, monkeypatch):
    """The 3rd save dies after writing its shards: latest still names the 2nd; resume finishes exactly."""
    real, calls = dcp_io.save_flat, {"n": 0}

    def failing(flat, path, **kw):
        calls["n"] += 1
        real(flat, path, **kw)
        if calls["n"] == 3:
            raise OSError("disk vanished after the shards were written")

    monkeypatch.setattr(dcp_io, "save_flat", failing)
    with pytest.raises(OSError):
        runs.run(runs.make_cfg(tmp_path, "bip"))
    monkeypatch.setattr(dcp_io, "save_flat", real)
    # saves: step 2, 4, epoch end 6 (the 3rd) -> latest stays at 4
    _check_survivor(_layout(tmp_path), "step_00000004_ep0000")
    res = runs.run(runs.make_cfg(tmp_path, "bip", "ckpt.resume=auto"))
    assert not list(_layout(tmp_path).root.glob(".step_*"))  # cleaned at start
    ref = runs.run(runs.make_cfg(tmp_path / "ref", "bip"))
    outputs.assert_same(outputs.final_state(ref["run_dir"]), outputs.final_state(res["run_dir"]))


def test_sigkill_between_write_and_rename(tmp_path):
    p = subprocess.run([sys.executable, "-m", "tests.checkpoint.kill_during_save", str(tmp_path), "4"],
                       env=child_env(), cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    # saves: 2, 4, 6 (epoch end), 8 (the 4th, killed before its rename)
    _check_survivor(_layout(tmp_path), "step_00000006_ep0001")
    res = runs.run(runs.make_cfg(tmp_path, "bip", "ckpt.resume=auto"))
    assert res["step"] == 12


def test_pointer_fallback_and_prune(tmp_path):
    ck = Layout(tmp_path)
    for step in (2, 4, 6):
        d = tmp_path / f"step_{step:08d}_ep0000"
        d.mkdir()
        (d / ".metadata").write_bytes(b"")
        (d / "extra.pt").write_bytes(b"")
    (tmp_path / ".step_00000008_ep0000.tmp").mkdir()
    assert ck.newest().name == "step_00000006_ep0000"  # no pointer: newest complete folder
    ck.write_pointer("latest", "step_00000009_ep0000")  # dangling pointer: fall back, never a partial folder
    assert ck.newest().name == "step_00000006_ep0000"
    ck.write_pointer("best", "step_00000002_ep0000")
    ck.prune(1)
    assert [p.name for p in ck.complete()] == ["step_00000002_ep0000", "step_00000006_ep0000"]
    ck.clean_partial()
    assert not (tmp_path / ".step_00000008_ep0000.tmp").exists()


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_metadata_reader_refuses_foreign_objects(tmp_path):
    dcp_io.save_flat({"a": torch.ones(3)}, tmp_path)
    assert torch.equal(dcp_io.load_flat(tmp_path)["a"], torch.ones(3))
    (tmp_path / ".metadata").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(pickle.UnpicklingError, match="not allowed"):
        dcp_io.load_flat(tmp_path)
