"""An .npz whose arrays do not form a labelled RGB image set is refused at start-up, by training and by
`data_prep verify`, with one line naming the file and what is wrong (it used to train on the first
len(y) images, or pass verify)."""

import numpy as np
import pytest

from bip_dist.data import DataConfig, build_loaders
from bip_dist.data.files import DataFileError
from data_prep.cli import main as prep_main
from launcher.worker import main as train_main
from tests.helpers.cli import short_argv
from tests.helpers.prepared import make_npz


FAULTS = {
    "fewer labels": (lambda x, y: dict(y=y[:10]), "10 labels for 24 images; they must be equal"),
    "one channel": (lambda x, y: dict(x=x[..., :1]),
                    "x must be N x H x W x 3 uint8 images, got uint8 24x32x32x1"),
    "label too big": (lambda x, y: dict(y=np.where(np.arange(24) == 5, 3, y)),
                      "label 3 of image 5 is outside 0..2 (1 of 24 labels out of range)"),
    "negative label": (lambda x, y: dict(y=-y - 1),
                       "label -1 of image 0 is outside 0..2 (24 of 24 labels out of range)"),
    "float labels": (lambda x, y: dict(y=y.astype(np.float32)),
                     "y must be a 1-D array of integer labels, got float32 24"),
    "float pixels": (lambda x, y: dict(x=x.astype(np.float32)),
                     "x must be N x H x W x 3 uint8 images, got float32"),
    "no classes": (lambda x, y: dict(classes=None), "missing arrays ['classes']"),
    "pickled labels": (lambda x, y: dict(y=y.astype(object)),
                       "unreadable array (ValueError: Object arrays cannot"),
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return make_npz(tmp_path_factory.mktemp("npz") / "train.npz")


def _faulty(good, tmp_path, name):
    """A copy of `good` with the arrays FAULTS[name] replaces (None = left out)."""
    with np.load(good) as z:
        arrays = {k: z[k] for k in z.files}
    arrays.update(FAULTS[name][0](arrays["x"], arrays["y"]))
    path = str(tmp_path / "train.npz")
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


@pytest.mark.parametrize("name", sorted(FAULTS))
def test_verify_refuses(good, tmp_path, capsys, name):
    path = _faulty(good, tmp_path, name)
    assert prep_main(["verify", path]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: {FAULTS[name][1]}"), err


@pytest.mark.parametrize("name", ["fewer labels", "one channel", "label too big"])
def test_loader_refuses_at_start(good, tmp_path, name):
    path = _faulty(good, tmp_path, name)
    cfg = DataConfig(dataset="cifar10", format="memory", train_file=path, val_file=good, batch_size=4,
                     workers=0)
    with pytest.raises(DataFileError, match=f"^{path}: "):
        build_loaders(cfg)


def test_training_prints_one_line(good, tmp_path, capsys):
    path = _faulty(good, tmp_path, "fewer labels")
    rc = train_main(short_argv(tmp_path / "runs", "data.dataset=cifar10", f"data.train_file={path}",
                               f"data.val_file={good}"))
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and err == [f"bip-train [rank 0]: {path}: 10 labels for 24 images; they must be equal"]


def test_not_an_npz(tmp_path, capsys):
    path = tmp_path / "val.npz"
    path.write_bytes(b"PK\x03\x04 cut short")
    assert prep_main(["verify", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {path}: not a readable .npz"), err


def test_good_npz_passes(good, capsys):
    assert prep_main(["verify", good]) == 0
    assert "OK (24 records, 3 classes" in capsys.readouterr().out
