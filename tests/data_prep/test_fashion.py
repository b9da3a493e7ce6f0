"""bip-prep fashion-mnist on tiny IDX files written here (gzip'd and plain): the reader, its one-line errors
on corrupt input (nothing written), resume, verify, and two training steps on the memory format."""

import gzip
import json
import os

import numpy as np
import pytest

from data_prep.cli import main
from data_prep.fashion import CLASSES, fashion_mnist
from data_prep.lmdb_writer import write_lmdb
from data_prep.naming import lmdb_name
from tests.helpers.prepared import lmdb_records

N_TRAIN, N_VAL = 60, 20
STEMS = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def idx_bytes(array):
    """An IDX file of unsigned bytes: magic 0x0000080<ndim>, big-endian dimensions, the data."""
    a = np.asarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.tobytes()


def write_idx_set(folder, gz=True, seed=0):
    """The four Fashion-MNIST files of random 28x28 images, labels round-robin; returns the arrays."""
    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", N_TRAIN), ("val", N_VAL)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = np.arange(n, dtype=np.uint8) % 10
        arrays[split] = (x, y)
        for stem, data in zip(STEMS[split], (x, y)):
            raw = idx_bytes(data)
            with open(os.path.join(folder, stem + (".gz" if gz else "")), "wb") as f:
                f.write(gzip.compress(raw) if gz else raw)
    return arrays


@pytest.fixture
def src(tmp_path):
    folder = str(tmp_path / "fmnist")
    return folder, write_idx_set(folder)


@pytest.mark.parametrize("gz", [True, False])
def test_reader(tmp_path, gz):
    folder = str(tmp_path / "src")
    arrays = write_idx_set(folder, gz=gz)
    for split in ("train", "val"):
        s = fashion_mnist(folder, split)
        x, y = arrays[split]
        assert s.arrays.shape == (len(x), 28, 28, 3) and s.arrays.dtype == np.uint8
        for c in range(3):  # grey replicated into three equal channels
            assert np.array_equal(s.arrays[..., c], x)
        assert s.labels == y.tolist() and s.classes == CLASSES


def _corrupt(folder, how):
    """Damage one file of a valid set the way `how` says; returns the path that the error must name."""
    img = os.path.join(folder, "t10k-images-idx3-ubyte.gz")
    lab = os.path.join(folder, "t10k-labels-idx1-ubyte.gz")
    raw = gzip.decompress(open(img, "rb").read())
    if how == "magic":
        bad = bytes([0, 0, 0x08, 1]) + raw[4:]  # the labels' magic on an images file
    elif how == "truncated":
        bad = raw[:-100]
    elif how == "count":
        raw_lab = gzip.decompress(open(lab, "rb").read())
        bad_lab = idx_bytes(np.frombuffer(raw_lab[8:], np.uint8)[:-1])
        open(lab, "wb").write(gzip.compress(bad_lab))
        return lab
    elif how == "gzip":
        open(img, "wb").write(gzip.compress(raw)[:-50])
        return img
    open(img, "wb").write(gzip.compress(bad))
    return img


@pytest.mark.parametrize("how,words", [("magic", "magic number 0x00000801, expected 0x00000803"),
                                       ("truncated", "truncated: header says 20 x 28 x 28"),
                                       ("gzip", "truncated gzip stream"),
                                       ("count", "19 labels, but")])
def test_corrupt_input_one_line_nothing_written(src, tmp_path, capsys, how, words):
    folder, _ = src
    path = _corrupt(folder, how)  # the val files: train is fine and would be written first
    out = str(tmp_path / "out")
    assert main(["fashion-mnist", "--src", folder, "--out", out, "--format", "memory,lmdb", "--workers", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: ") and words in err[0], err
    assert not os.path.exists(out) or os.listdir(out) == []


def test_missing_source_one_line(tmp_path, capsys):
    assert main(["fashion-mnist", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nowhere: Fashion-MNIST folder not found" in err[0]


def test_prep_memory_then_verify(src, tmp_path, capsys):
    folder, arrays = src
    out = str(tmp_path / "out")
    assert main(["fashion-mnist", "--src", folder, "--out", out, "--workers", "0"]) == 0  # default: memory
    assert sorted(os.listdir(out)) == ["train.npz", "val.npz"]
    with np.load(os.path.join(out, "val.npz"), allow_pickle=False) as z:
        assert z["x"].shape == (N_VAL, 28, 28, 3) and z["y"].tolist() == arrays["val"][1].tolist()
    for split in ("train", "val"):
        assert main(["verify", os.path.join(out, f"{split}.npz"), "--dataset", "fashion-mnist", "--src", folder]) == 0
    # A changed label is caught against the source.
    with np.load(os.path.join(out, "val.npz"), allow_pickle=False) as z:
        x, y, classes = z["x"], z["y"].copy(), z["classes"]
    y[3] = (y[3] + 1) % 10
    np.savez(os.path.join(out, "val.npz"), x=x, y=y, classes=classes)
    capsys.readouterr()
    assert main(["verify", os.path.join(out, "val.npz"), "--dataset", "fashion-mnist", "--src", folder]) == 1
    assert "val.npz" in capsys.readouterr().err


class _StopsAt:
    """A Source whose item `stop` cannot be read: a conversion interrupted there."""

    def __init__(self, source, stop):
        self.source, self.stop = source, stop

    def __getattr__(self, name):
        return getattr(self.source, name)

    def __len__(self):
        return len(self.source)

    def task_src(self, i):
        if i == self.stop:
            raise KeyboardInterrupt("interrupted")
        return self.source.task_src(i)


def test_lmdb_resume_identical_and_verifies(src, tmp_path, capsys):
    folder, _ = src
    out, fresh = str(tmp_path / "out"), str(tmp_path / "fresh")
    os.makedirs(out)
    name = lmdb_name("train", 0, 90)
    with pytest.raises(KeyboardInterrupt):
        write_lmdb(_StopsAt(fashion_mnist(folder, "train"), 20), os.path.join(out, name), max_side=0,
                   quality=90, workers=0, chunk=8)
    assert os.path.exists(os.path.join(out, name + ".partial")) and not os.path.exists(os.path.join(out, name))
    argv = ["fashion-mnist", "--src", folder, "--format", "lmdb", "--splits", "train", "--chunk", "8",
            "--workers", "0"]
    assert main(argv + ["--out", out]) == 0
    assert "resuming at item 16" in capsys.readouterr().out
    assert main(argv + ["--out", fresh]) == 0
    assert lmdb_records(os.path.join(out, name)) == lmdb_records(os.path.join(fresh, name))
    assert main(["verify", os.path.join(out, name), "--dataset", "fashion-mnist", "--src", folder]) == 0


def test_two_training_steps_with_holdout(src, tmp_path, tiny_models):
    from tests.helpers.runs import tiny_cfg
    from bip_dist.train.loop import train

    folder, _ = src
    root = str(tmp_path / "prepared")
    assert main(["fashion-mnist", "--src", folder, "--out", root, "--workers", "0"]) == 0
    cfg = tiny_cfg(tmp_path / "runs", "data.dataset=fashion_mnist", "data.format=memory", f"data.root={root}",
                   "data.holdout=10", "train.max_steps=2", "train.log_every=1")
    result = train(cfg)
    assert result["step"] == 2
    with open(os.path.join(result["run_dir"], "result.json")) as f:
        saved = json.load(f)
    assert saved["val_count"] == N_VAL and saved["holdout_count"] == 10
    for key in ("holdout_top1", "holdout_loss", "val_top1", "val_loss"):
        assert key in saved and np.isfinite(saved[key])
    epochs = [json.loads(line) for line in open(os.path.join(result["run_dir"], "metrics.jsonl"))]
    assert any("holdout_top1" in rec for rec in epochs if rec["kind"] == "epoch")
