"""Fault: the disk fills up during a save. The run stops with one line (also in log.txt) saying which save
failed and which checkpoint survives, the torn temporary folder is removed, the previous checkpoint stays
loadable."""

import errno
import os

import pytest
import torch.distributed.checkpoint.filesystem as dcp_fs

from bip_dist.checkpoint.consolidate import consolidate
from bip_dist.checkpoint.layout import Layout
from bip_dist.run_dir import run_dir_for
from tests.helpers import runs
from tests.helpers.cli import bip_train
from tests.helpers.outputs import error_lines

pytestmark = pytest.mark.usefixtures("tiny_models")


def _full_disk_in_shard(monkeypatch, marker):
    real = dcp_fs._write_item

    def write_item(transforms, stream, *a, **k):
        if marker in str(getattr(stream, "name", "")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(transforms, stream, *a, **k)

    monkeypatch.setattr(dcp_fs, "_write_item", write_item)


def _full_disk_at_fsync(monkeypatch, marker):
    real = os.fsync

    def fsync(fd):
        if marker in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize("where, step, target, kept", [
    ("shard", 4, "checkpoints/step_00000004_ep0000", "step_00000002_ep0000"),
    ("final", 6, "final.pt", "step_00000006_ep0001"),
])
def test_disk_full_is_one_line(tmp_path, capsys, monkeypatch, where, step, target, kept):
    run = run_dir_for(runs.make_cfg(tmp_path, "bip", "log.tensorboard=false", "train.epochs=1"))
    if where == "shard":
        _full_disk_in_shard(monkeypatch, "step_00000004")
    else:
        _full_disk_at_fsync(monkeypatch, "final.pt")
    capsys.readouterr()
    assert bip_train(tmp_path, "bip", "train.epochs=1") == 2
    want = (f"no space left on device while saving step {step} to {run / target}; "
            f"the previous checkpoint {kept} is intact")
    lines = error_lines(capsys.readouterr().err)
    assert lines == [f"bip-train [rank 0]: {want}"], lines
    assert want in (run / "log.txt").read_text()
    monkeypatch.undo()
    ck = Layout(run / "checkpoints")
    assert ck.read_pointer("latest") == kept and not list(ck.root.glob(".step_*"))
    assert consolidate(ck.newest())["conv1.scores"].numel() > 0
    assert not list(run.glob("final.pt*"))
