"""Data faults of the second adversarial pass: a val split lacking a class, a directory link loop in an
image folder, a cut `.lmdb.partial`, bad images found only late, and a non-zip `.npz`.

Each is refused or handled with one line naming the file; none may shift labels, repeat images, or kill
the process without a word (the prep reruns run in a forked child, so a SIGBUS cannot take pytest down).
"""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from bip_dist.data import DataConfig, build_loaders
from bip_dist.data.datasets import FolderDataset
from bip_dist.data.files import DataFileError
from data_prep import sources
from data_prep.cli import main as prep_main
from data_prep.memory_writer import write_npz
from launcher.worker import main as train_main
from tests.helpers import ROOT
from tests.helpers.cli import child_env, short_argv
from tests.helpers.outputs import error_lines
from tests.helpers.prepared import image_source, lmdb_records, make_npz


def _tree(root, layout, size=16, seed=0):
    """root/<split>/<class>/<k>.png for {split: {class: count}}: noise images (distinct JPEGs)."""
    rng = np.random.default_rng(seed)
    for split, counts in layout.items():
        for c, n in counts.items():
            os.makedirs(root / split / c, exist_ok=True)
            for k in range(n):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                    root / split / c / f"{k}.png")
    return root


def _cfg(root, **kw):
    return DataConfig(**{**dict(dataset="folder", format="folder", root=str(root), batch_size=4, workers=0,
                                image_size=16, augment=False, drop_last=False), **kw})


# 1. A val split that lacks a class keeps train's labels; an unknown val class or class list is refused.

@pytest.fixture
def no_val_0(tmp_path):
    return _tree(tmp_path / "src", {"train": {"0": 3, "1": 3, "2": 3}, "val": {"1": 2, "2": 2}})


def test_prep_val_lacking_a_class_keeps_train_labels(no_val_0, tmp_path):
    out = tmp_path / "out"
    assert prep_main(["folder", "--src", str(no_val_0), "--out", str(out), "--format", "memory",
                      "--max-side", "0", "--workers", "0"]) == 0
    with np.load(out / "val.npz") as z:
        assert list(z["classes"]) == ["0", "1", "2"] and list(z["y"]) == [1, 1, 2, 2]


def test_prep_val_with_an_unknown_class_is_refused(no_val_0, tmp_path, capsys):
    _tree(no_val_0, {"val": {"9": 1}})
    assert prep_main(["folder", "--src", str(no_val_0), "--out", str(tmp_path / "out"), "--splits", "val",
                      "--format", "memory", "--workers", "0"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {no_val_0 / 'val/9'}: class folder '9' is not among the 3 training classes "
                   f"(1 unknown in {no_val_0 / 'val'})"]


def test_folder_training_val_lacking_a_class_keeps_train_labels(no_val_0):
    loaders = build_loaders(_cfg(no_val_0))
    labels = sorted(int(v) for _, y in loaders.val for v in y)
    assert loaders.num_classes == 3 and labels == [1, 1, 2, 2]


def test_folder_training_refuses_an_unknown_val_class(no_val_0):
    _tree(no_val_0, {"val": {"9": 1}})
    with pytest.raises(DataFileError, match=f"^{no_val_0 / 'val/9'}: class folder '9' is not among"):
        build_loaders(_cfg(no_val_0))


def test_training_refuses_val_npz_with_other_class_names(tmp_path, capsys):
    train = make_npz(tmp_path / "train.npz")  # classes a, b, c
    val = str(tmp_path / "val.npz")
    write_npz(image_source(8, ["b", "c"]), val)  # written by a prep that listed val's own folders
    rc = train_main(short_argv(tmp_path / "runs", "data.dataset=cifar10", f"data.train_file={train}",
                               f"data.val_file={val}"))
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and err == [f"bip-train [rank 0]: {val}: its 2 class names differ from the 3 of {train} "
                               f"(label 0: 'b' in val, 'a' in train); every split must use train's class "
                               f"list, rebuild it with `python -m data_prep`"]


# 2. A directory link loop inside a class folder is not followed, by training or by data_prep.

def test_directory_link_loop_is_not_followed(tmp_path, capsys):
    root = _tree(tmp_path, {"train": {"3": 2, "4": 3}})
    os.symlink("..", root / "train/4/loop")
    ds = FolderDataset(str(root / "train"))
    assert [label for _, label in ds.samples] == [0, 0, 1, 1, 1]
    assert capsys.readouterr().err.splitlines() == [
        f"[data] warning: {root / 'train'}: 1 directory link(s) not followed, their images are not used "
        f"(first: {root / 'train/4/loop'} -> ..)"]
    src = sources.class_folders(str(root / "train"))  # data_prep: the same images, the same labels
    assert [os.path.join(src.root, r) for r in src.refs] == [p for p, _ in ds.samples]
    assert src.labels == [label for _, label in ds.samples]
    assert "[prep] warning: " in capsys.readouterr().err


def test_class_folder_linking_back_to_the_tree_is_not_followed(tmp_path):
    root = _tree(tmp_path, {"train": {"a": 2, "b": 1}})
    os.symlink(str(root / "train"), root / "train/c")
    ds = FolderDataset(str(root / "train"))
    assert ds.classes == ["a", "b", "c"] and [label for _, label in ds.samples] == [0, 0, 1]


# 7. A cut .lmdb.partial: no SIGBUS; the prep starts over and says so. A cut final .lmdb names --force.
# The reruns are new processes: a SIGBUS (the fault) must not take pytest down, and a fork of pytest
# after earlier tests' threads may deadlock.

KILLED_AT = """
import os, signal, sys
import data_prep.lmdb_writer as writer
from data_prep.cli import main
real = writer.prepare
def prepare(task):
    if task[0] == 30:  # after three chunks of 8 were committed
        os.kill(os.getpid(), signal.SIGKILL)
    return real(task)
writer.prepare = prepare
sys.exit(main(sys.argv[1:]))
"""


def _prep(argv, script=None):
    """bip-prep `argv` in a new process: (exit status, or -signal; its error lines)."""
    cmd = [sys.executable, "-c", script, *argv] if script else [sys.executable, "-m", "data_prep", *argv]
    done = subprocess.run(cmd, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=300)
    return done.returncode, error_lines(done.stderr)


@pytest.fixture
def prep(tmp_path):
    src = _tree(tmp_path / "src", {"train": {"a": 20, "b": 20}}, size=32)
    out = tmp_path / "out"
    argv = ["folder", "--src", str(src), "--out", str(out), "--splits", "train", "--format", "lmdb",
            "--max-side", "0", "--workers", "0", "--chunk", "8"]
    return argv, out / "train_lmdb_ms0_q90.lmdb"


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_cut_partial_restarts_cleanly_and_says_so(prep, tmp_path, force):
    argv, lmdb = prep
    assert _prep(argv, KILLED_AT)[0] == -signal.SIGKILL
    partial = f"{lmdb}.partial"
    size = os.path.getsize(partial)
    os.truncate(partial, size - 8192)
    rc, lines = _prep(argv + ["--force"] * force)
    assert rc == 0, lines
    assert len(lines) == 1 and lines[0].startswith(f"[prep] warning: {partial}: truncated: {size - 8192} bytes")
    assert lines[0].endswith("the unfinished file of an earlier run is damaged; starting over from item 0")
    clean = tmp_path / "clean"
    assert prep_main([*argv[:4], str(clean), *argv[5:]]) == 0
    assert lmdb_records(lmdb) == lmdb_records(clean / lmdb.name)


def test_cut_final_lmdb_advice_names_force(prep):
    argv, lmdb = prep
    assert prep_main(argv) == 0
    os.truncate(lmdb, os.path.getsize(lmdb) - 8192)
    rc, lines = _prep(argv)
    assert rc == 1 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: {lmdb}: truncated: ")
    assert lines[0].endswith("copy it again or rerun with --force to rebuild it")
    assert prep_main(argv + ["--force"]) == 0
    assert prep_main(["verify", str(lmdb)]) == 0


# 11. Every unreadable image, found in one pass: by `bip-prep verify` and by data.check_images.

@pytest.fixture
def two_bad(tmp_path):
    root = _tree(tmp_path / "data", {"train": {"a": 4, "b": 4}, "val": {"a": 2, "b": 2}})
    (root / "train/b/3.png").write_bytes(b"not an image")
    (root / "val/a/0.png").write_bytes(b"\x89PNG cut")
    return root


def test_verify_names_every_unreadable_image_of_a_folder(two_bad, capsys):
    assert prep_main(["verify", str(two_bad), "--workers", "0"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {two_bad / 'train/b/3.png'}: not a readable image (unknown image format)",
                   f"error: {two_bad / 'val/a/0.png'}: not a readable image (unknown image format)",
                   f"error: {two_bad}: 2 of 12 images unreadable"]


def test_verify_names_every_unreadable_lmdb_record(tmp_path, capsys):
    import lmdb as lmdb_lib

    from bip_dist.data.records import pack_record, record_key
    from tests.helpers.prepared import make_lmdb
    path = make_lmdb(tmp_path / "train_lmdb_ms0_q90.lmdb", n=12)
    env = lmdb_lib.open(path, subdir=False)
    with env.begin(write=True) as txn:
        for i in (2, 9):
            txn.put(record_key(i), pack_record(0, b"\xff\xd8\xff garbage"))
    env.close()
    capsys.readouterr()
    assert prep_main(["verify", path]) == 1
    err = capsys.readouterr().err.splitlines()
    assert [ln.split(": ")[2] for ln in err] == ["record 2", "record 9", "2 of 12 records unreadable"], err


def test_check_images_names_every_bad_file_at_start_up(two_bad, tmp_path, capsys):
    rc = train_main(short_argv(tmp_path / "runs", "data.dataset=folder", "data.format=folder",
                               f"data.root={two_bad}", "data.image_size=16", "data.workers=2",
                               "data.check_images=true"))
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and err == [
        "bip-train [rank 0]: data.check_images: 2 unreadable image(s); fix or remove them, or set "
        "data.skip_bad: true",
        f"  {two_bad / 'train/b/3.png'}: not a readable image (unknown image format)",
        f"  {two_bad / 'val/a/0.png'}: not a readable image (unknown image format)"]


def test_check_images_with_skip_bad_lists_them_and_trains(two_bad, capsys):
    loaders = build_loaders(_cfg(two_bad, check_images=True, skip_bad=True))
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(ln.startswith("[data] warning: ") for ln in err)
    assert sum(len(y) for _, y in loaders.train) == 8
    assert capsys.readouterr().err == ""  # marked at start-up: not decoded or reported again


# 14. A .npz that is not a zip archive is called that, not "pickled data".

@pytest.mark.parametrize("content, reason", [
    (b"hello, not an archive", "not an .npz: not a zip archive (it starts with b'hello, n')"),
    (b"", "empty file (0 bytes), not an .npz")])
def test_non_zip_npz_gives_the_true_reason(tmp_path, capsys, content, reason):
    path = tmp_path / "val.npz"
    path.write_bytes(content)
    assert prep_main(["verify", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [f"error: {path}: {reason}; rebuild it with `python -m data_prep`"]
