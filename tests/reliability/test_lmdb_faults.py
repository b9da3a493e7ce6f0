"""A truncated or empty LMDB stops `data_prep verify` and training with one line naming the file.

A truncated LMDB used to kill the reader with SIGBUS (exit 135, no output); the commands run in a forked
child so that a regression cannot take pytest down with it.
"""

import os
import shutil

import pytest

from bip_dist.data.datasets import LMDBDataset
from bip_dist.data.files import DataFileError
from data_prep.cli import main as prep_main
from launcher.worker import main as train_main
from tests.helpers.cli import in_child, short_argv
from tests.helpers.prepared import make_lmdb


@pytest.fixture(scope="module")
def lmdb_file(tmp_path_factory):
    return make_lmdb(tmp_path_factory.mktemp("lmdb") / "train_lmdb_ms0_q90.lmdb")


def _truncated(src, dst, cut=8192):
    shutil.copy(src, dst)
    os.truncate(dst, os.path.getsize(dst) - cut)
    return str(dst)


def test_verify_names_a_truncated_lmdb(lmdb_file, tmp_path):
    bad = _truncated(lmdb_file, tmp_path / "cut.lmdb")
    rc, lines = in_child(prep_main, ["verify", bad])
    assert rc == 1, lines
    assert lines == [f"error: {bad}: truncated: {os.path.getsize(bad)} bytes, its LMDB meta pages need "
                     f"{os.path.getsize(lmdb_file)} (8192 missing); copy it again or rebuild it with "
                     f"`python -m data_prep`"]


def test_training_names_a_truncated_lmdb(lmdb_file, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    bad = _truncated(lmdb_file, data / "train_lmdb_ms0_q90.lmdb")
    shutil.copy(lmdb_file, data / "val_lmdb_ms0_q90.lmdb")
    rc, lines = in_child(train_main, short_argv(tmp_path / "runs", "data.format=lmdb", f"data.root={data}",
                                                "data.workers=2"))
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"bip-train [rank 0]: {bad}: truncated: "), lines


def test_intact_lmdb_still_verifies(lmdb_file, capsys):
    assert prep_main(["verify", lmdb_file]) == 0
    assert "OK (40 records, 3 classes" in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not an lmdb" * 1000], ids=["empty", "junk"])
def test_empty_or_foreign_file_is_one_line(tmp_path, capsys, content):
    path = tmp_path / "train_lmdb_ms0_q90.lmdb"
    path.write_bytes(content)
    with pytest.raises(DataFileError, match=f"^{path}: (empty file|not an LMDB file)"):
        LMDBDataset(path)
    assert prep_main(["verify", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: "), err
    assert path.read_bytes() == content  # opening read-only changed nothing
