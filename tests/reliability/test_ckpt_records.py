"""Faults in what a checkpoint records about itself: a lost checksum file must not pass as an older
checkpoint; two fresh runs with one seed must save the same RNG states; every file of a checkpoint must
have the mode the umask gives."""

import os
import random
import stat

import numpy as np
import pytest
import torch

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.integrity import BadCheckpoint, verify
from bip_dist.checkpoint.layout import EXTRA, Layout, rank_file
from tests.helpers import runs
from tests.helpers.cli import bip_train
from tests.helpers.outputs import error_lines

pytestmark = pytest.mark.usefixtures("tiny_models")


def _run(out, *extra):
    res = runs.run(runs.make_cfg(out, "bip", "train.epochs=1", *extra))
    return Layout(os.path.join(res["run_dir"], "checkpoints"))


def _flip(path):
    b = bytearray(path.read_bytes())
    b[len(b) // 2] ^= 0xFF
    path.write_bytes(bytes(b))


def test_lost_checksum_files_are_an_error(tmp_path, capsys):
    ck = _run(tmp_path)
    folder, final = ck.newest(), ck.root.parent / "final.pt"
    for m in folder.glob("checksums_*.json"):
        m.unlink()
    _flip(folder / "__0_0.distcp")
    with pytest.raises(BadCheckpoint, match=r"its checksum files \(checksums_\*\.json\) are missing, though "
                                            r"extra.pt records that they were written$"):
        verify(folder)
    (ck.root.parent / "final.pt.sum").unlink()
    with pytest.raises(BadCheckpoint, match="its checksum file final.pt.sum is missing, though final.pt records"):
        verify(final)
    from launcher.ckpt import main
    capsys.readouterr()
    assert main(["verify", str(ck.root.parent)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [line[:4] for line in out] == ["BAD ", "BAD ", "ok  "], out
    line = _refused(capsys, tmp_path / "next", folder)
    assert line.endswith(f"{folder}: its checksum files (checksums_*.json) are missing, though extra.pt "
                         "records that they were written"), line


def _refused(capsys, out, resume):
    capsys.readouterr()
    code = bip_train(out, "bip", "train.epochs=2", args=["--resume", str(resume)])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, (code, lines)
    return lines[0]


def test_checkpoints_from_before_checksums_pass_labelled(tmp_path, capsys):
    ck = _run(tmp_path)
    folder, final = ck.newest(), ck.root.parent / "final.pt"
    for m in folder.glob("checksums_*.json"):
        m.unlink()
    for path in (folder / EXTRA, final):  # as written before checksums existed: no record of them
        obj = torch.load(path, weights_only=True)
        obj.pop("checksums_written", None)
        torch.save(obj, path)
    (ck.root.parent / "final.pt.sum").unlink()
    assert verify(folder) == ("no checksums recorded (written before checksums existed); its files are all "
                              "present, their contents unchecked")
    assert verify(final) == "no checksum recorded (written before checksums existed); its contents are unchecked"
    capsys.readouterr()
    assert bip_train(tmp_path / "next", "bip", "train.epochs=2", args=["--resume", str(folder)]) == 0
    assert f"resume: {folder}: no checksums recorded (written before checksums existed)" in capsys.readouterr().err


def _rng(rng):
    return [rng["torch"], rng["numpy"]["keys"], torch.tensor(rng["numpy"]["pos"]), rng["python"]["internal"]]


def test_two_fresh_runs_with_one_seed_save_the_same_checkpoints(tmp_path):
    np.random.seed(1), random.seed(1)  # what one process inherits ...
    a = _run(tmp_path / "a")
    np.random.seed(2), random.seed(2)  # ... and another
    b = _run(tmp_path / "b")
    names = [p.name for p in a.complete()]
    assert names and names == [p.name for p in b.complete()]
    for name in names:
        fa, fb = dcp_io.load_flat(a.root / name), dcp_io.load_flat(b.root / name)
        assert fa.keys() == fb.keys() and all(torch.equal(fa[k], fb[k]) for k in fa), name
        ra, rb = (torch.load(x.root / name / rank_file(0), weights_only=True)["rng"] for x in (a, b))
        assert all(torch.equal(x, y) for x, y in zip(_rng(ra), _rng(rb))), name
    ra, rb = (torch.load(x.root.parent / "final.pt", weights_only=True)["rng"] for x in (a, b))
    assert all(torch.equal(x, y) for x, y in zip(_rng(ra), _rng(rb)))


def test_host_generators_differ_per_rank():
    from bip_dist.checkpoint.state import rng_state, seed_host_rngs
    seed_host_rngs(0, 0)
    r0 = rng_state()
    seed_host_rngs(0, 1)
    r1 = rng_state()
    assert not torch.equal(r0["numpy"]["keys"], r1["numpy"]["keys"])
    assert not torch.equal(r0["python"]["internal"], r1["python"]["internal"])


@pytest.mark.parametrize("umask", [0o027, 0o002])
def test_every_checkpoint_file_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        ck = _run(tmp_path, "ckpt.async_save=true")
    finally:
        os.umask(old)
    run = ck.root.parent
    files = [p for f in ck.complete() for p in f.iterdir()] + [run / "final.pt", run / "final.pt.sum",
                                                               ck.root / "latest"]
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {oct(0o666 & ~umask)}, modes
