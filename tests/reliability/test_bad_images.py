"""A sample that does not decode (a non-image .jpg in a class folder, a damaged LMDB record) stops
training with one line naming it, also when a DataLoader worker meets it; with data.skip_bad the next
readable sample stands in for it, and it is reported once."""

import os

import lmdb
import numpy as np
import pytest
import torch
from PIL import Image

from bip_dist.data import DataConfig, build_loaders
from bip_dist.data.bad_samples import SampleGuard
from bip_dist.data.datasets import FolderDataset, LMDBDataset
from bip_dist.data.files import DataFileError
from bip_dist.data.records import pack_record, record_key
from launcher.worker import main as train_main
from tests.helpers.cli import short_argv
from tests.helpers.prepared import make_lmdb

HINT = "fix the data or set data.skip_bad: true"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """train/ and val/ with two classes of four 16x16 images each; train/b/b2.jpg is text."""
    root = tmp_path_factory.mktemp("folder")
    for split in ("train", "val"):
        for c, name in enumerate("ab"):
            os.makedirs(root / split / name)
            for k in range(4):
                Image.new("RGB", (16, 16), (60 * c + 10 * k, 100, 50)).save(root / split / name / f"{name}{k}.jpg")
    (root / "train" / "b" / "b2.jpg").write_bytes(b"this is not a JPEG")
    return root


def _cfg(root, **kw):
    return DataConfig(**{**dict(dataset="folder", format="folder", root=str(root), batch_size=4, workers=0,
                                image_size=16, augment=False, drop_last=False), **kw})


def test_folder_stops_with_one_line(folder):
    loaders = build_loaders(_cfg(folder))
    with pytest.raises(DataFileError) as e:
        for _ in loaders.train:
            pass
    assert str(e.value) == f"{folder / 'train/b/b2.jpg'}: not a readable image (unknown image format); {HINT}"


def test_worker_error_reaches_the_cli_as_one_line(folder, tmp_path, capfd):
    rc = train_main(short_argv(tmp_path / "runs", "data.dataset=folder", "data.format=folder",
                               f"data.root={folder}", "data.image_size=16", "data.workers=2"))
    err = [ln.rsplit("\r", 1)[-1] for ln in capfd.readouterr().err.splitlines()]
    assert rc == 2
    assert [ln for ln in err if "bip-train" in ln] == [
        f"bip-train [rank 0]: {folder / 'train/b/b2.jpg'}: not a readable image (unknown image format); {HINT}"]
    assert not [ln for ln in err if "Traceback" in ln]


def test_skip_bad_uses_the_next_sample_and_reports_once(folder, capsys):
    ds = FolderDataset(str(folder / "train"))
    bad = [p for p, _ in ds.samples].index(str(folder / "train/b/b2.jpg"))
    guard = SampleGuard(ds, skip_bad=True)
    img, label = guard[bad]
    want_img, want_label = ds.decode(bad + 1)
    assert label == want_label and list(img.getdata()) == list(want_img.getdata())
    guard[bad]
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"[data] warning: {folder / 'train/b/b2.jpg'}: not a readable")
    assert guard.bad_count == 1


def test_skip_bad_training_runs_with_workers(folder, tmp_path, capfd):
    rc = train_main(short_argv(tmp_path / "runs", "data.dataset=folder", "data.format=folder",
                               f"data.root={folder}", "data.image_size=16", "data.workers=2", "data.skip_bad=true",
                               "train.max_steps=4"))
    err = capfd.readouterr().err
    assert rc == 0 and err.count("[data] warning: ") == 1  # two epochs, two workers: still reported once


@pytest.fixture
def damaged_lmdb(tmp_path):
    """An LMDB whose record 3 holds bytes that are not a JPEG (written past data_prep's checks)."""
    path = make_lmdb(tmp_path / "train_lmdb_ms0_q90.lmdb", n=8)
    env = lmdb.open(path, subdir=False)
    with env.begin(write=True) as txn:
        txn.put(record_key(3), pack_record(0, b"\xff\xd8\xff garbage"))
    env.close()
    return path


def test_damaged_lmdb_record_same_rule(damaged_lmdb, capsys):
    ds = LMDBDataset(damaged_lmdb, transform=lambda im: torch.from_numpy(np.array(im)))
    with pytest.raises(DataFileError) as e:
        SampleGuard(ds)[3]
    assert str(e.value).startswith(f"{damaged_lmdb}: record 3: not a readable image (")
    assert str(e.value).endswith(HINT) and "\n" not in str(e.value)
    guard = SampleGuard(ds, skip_bad=True)
    assert torch.equal(guard[3][0], ds[4][0]) and guard[3][1] == ds[4][1]
    assert capsys.readouterr().err.startswith(f"[data] warning: {damaged_lmdb}: record 3: ")
