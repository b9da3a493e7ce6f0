"""Readers, the LMDB writer, quirks and bad input, through the real CLI."""

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bip_dist.data.records import record_key, unpack_record
from data_prep import sources
from data_prep.cli import main
from data_prep.cifar import cifar
from tests.helpers.archives import WNIDS, make_cifar10, make_imagenet, make_tiny
from tests.helpers.prepared import lmdb_records as records


def test_imagenet_quirks_convert_and_label(imagenet_src, tmp_path):
    out = str(tmp_path / "out")
    assert main(["imagenet", "--src", imagenet_src, "--out", out, "--format", "lmdb", "--workers", "2",
                 "--max-side", "32"]) == 0
    recs = records(os.path.join(out, "train_lmdb_ms32_q90.lmdb"))
    meta = json.loads(recs[b"__meta__"])
    assert meta["count"] == 12 and meta["classes"] == WNIDS and meta["labels_per_class"] == [4, 4, 4]
    from PIL import Image
    import io
    for i in range(12):  # CMYK, grayscale, PNG-as-JPEG and odd-case names all became RGB JPEGs <= 32 px
        label, payload, _ = unpack_record(recs[record_key(i)], check=True)
        im = Image.open(io.BytesIO(payload))
        assert (im.format, im.mode, label) == ("JPEG", "RGB", i // 4) and max(im.size) == 32
    val = json.loads(records(os.path.join(out, "val_lmdb_ms32_q90.lmdb"))[b"__meta__"])
    assert val["count"] == 6 and val["labels_per_class"] == [2, 2, 2]


def test_imagenet_val_flat_csv_equals_class_folders(tmp_path):
    flat = sources.imagenet(make_imagenet(str(tmp_path / "a")), "val")
    folders = sources.imagenet(make_imagenet(str(tmp_path / "b"), flat_val=False), "val")
    assert flat.labels == folders.labels == [0, 0, 1, 1, 2, 2]
    assert [os.path.basename(r) for r in flat.refs] == [os.path.basename(r) for r in folders.refs]


def test_imagenet_csv_unknown_wnid_names_row(imagenet_src, capsys):
    p = os.path.join(imagenet_src, "LOC_val_solution.csv")
    with open(p, "a") as f:
        f.write("ILSVRC2012_val_00000099,n99999999 1 2 3 4\n")
    assert main(["imagenet", "--src", imagenet_src, "--out", imagenet_src + "_o", "--splits", "val"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "LOC_val_solution.csv:8" in err[0] and "n99999999" in err[0]


def test_tiny_imagenet_labels_follow_sorted_wnids(tmp_path):
    root = make_tiny(str(tmp_path / "tiny"))
    tr, va = sources.tiny_imagenet(root, "train"), sources.tiny_imagenet(root, "val")
    assert tr.classes == WNIDS and tr.labels == [0, 0, 1, 1, 2, 2]
    assert va.labels == [2, 0, 1, 0]  # val_0 .. val_3 as annotated


@pytest.mark.parametrize("archive", [True, False])
def test_cifar10_archive_and_folder(tmp_path, archive):
    root = make_cifar10(str(tmp_path / "c"), archive=archive)
    out = str(tmp_path / "out")
    assert main(["cifar10", "--src", root, "--out", out, "--format", "memory,lmdb", "--workers", "0"]) == 0
    z = np.load(os.path.join(out, "train.npz"), allow_pickle=False)
    src = cifar(root, "cifar10", "train")
    assert z["x"].shape == (30, 32, 32, 3) and np.array_equal(z["y"], src.labels)
    assert np.array_equal(z["x"], src.arrays) and list(z["classes"])[0] == "airplane"
    assert main(["verify", os.path.join(out, "train_lmdb_ms0_q90.lmdb"), "--dataset", "cifar10",
                 "--src", root, "--deep"]) == 0


def test_cifar_malicious_pickle_is_refused(tmp_path, capsys):
    root = make_cifar10(str(tmp_path / "c"), archive=False)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))
    with open(os.path.join(root, "cifar-10-batches-py", "data_batch_2"), "wb") as f:
        pickle.dump({b"data": Evil()}, f, protocol=2)
    assert main(["cifar10", "--src", root, "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data_batch_2" in err[0] and "system" in err[0]
    assert not (tmp_path / "pwned").exists()


def test_corrupt_input_named_and_skip_bad(imagenet_src, tmp_path, capsys):
    bad1 = os.path.join(imagenet_src, "train", WNIDS[1], f"{WNIDS[1]}_1.JPEG")
    bad2 = os.path.join(imagenet_src, "train", WNIDS[2], f"{WNIDS[2]}_2.JPEG")
    data = Path(bad1).read_bytes()
    Path(bad1).write_bytes(data[: len(data) // 2])  # truncated
    Path(bad2).write_bytes(b"not an image at all")  # corrupt
    out = str(tmp_path / "out")
    args = ["imagenet", "--src", imagenet_src, "--out", out, "--format", "lmdb", "--splits", "train",
            "--workers", "2", "--chunk", "2"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert bad1 in err and bad2 in err and len([ln for ln in err.splitlines() if ln.startswith("error: /")]) == 2
    final = os.path.join(out, "train_lmdb_ms256_q90.lmdb")
    assert not os.path.exists(final) and os.path.exists(final + ".partial")
    assert main(args + ["--skip-bad"]) == 0  # resumes the partial, leaves the two out
    meta = json.loads(records(final)[b"__meta__"])
    assert meta["count"] == 10 and meta["labels_per_class"] == [4, 3, 3]
    report = json.loads(Path(final + ".skipped.json").read_text())
    assert [s["path"] for s in report["skipped"]] == [bad1, bad2]
    assert main(["verify", final, "--dataset", "imagenet", "--src", imagenet_src, "--deep"]) == 0



def test_truncated_existing_output_is_one_line_not_a_crash(imagenet_src, tmp_path):
    out = str(tmp_path / "out")
    argv = ["imagenet", "--src", imagenet_src, "--out", out, "--format", "lmdb", "--workers", "2",
            "--max-side", "32", "--splits", "train"]
    assert main(argv) == 0
    path = os.path.join(out, "train_lmdb_ms32_q90.lmdb")
    os.truncate(path, os.path.getsize(path) - 8192)
    size = os.path.getsize(path)
    # An existing output is re-read for its meta; a regression there is SIGBUS, so it runs in a child.
    run = subprocess.run([sys.executable, "-m", "data_prep", *argv], capture_output=True, text=True,
                         timeout=120, cwd=Path(__file__).resolve().parents[2])
    err = run.stderr.strip().splitlines()
    assert run.returncode == 1 and len(err) == 1 and f"{path}: truncated: {size} bytes" in err[0], run.stderr
    assert os.path.getsize(path) == size  # left as it was, for the user to rebuild with --force
