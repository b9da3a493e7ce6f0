"""`verify` on .beton files: a good file passes; a changed pixel, label, truncation or lost sidecar fails."""

import os
import shutil

import numpy as np
import pytest

from data_prep.cli import main
from tests.helpers.archives import save

ffcv = pytest.importorskip("ffcv")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("beton")
    src = str(tmp / "src")
    for k in range(12):
        save(os.path.join(src, "train", f"c{k % 3}", f"img{k:03d}.jpg"), k, size=(40, 30))
    out = str(tmp / "out")
    files = {}
    for mode in ("raw", "jpg"):
        assert main(["folder", "--src", src, "--splits", "train", "--out", out, "--format", "ffcv",
                     "--workers", "0", "--write-mode", mode]) == 0
        files[mode] = os.path.join(out, f"train_ffcv_ms256_p0.50_q90_{mode}.beton")
    return src, out, files


def _copy(good, dst_dir, name):
    """A copy of `good` with its sidecar and source LMDB, so the original stays untouched."""
    os.makedirs(dst_dir, exist_ok=True)
    bad = os.path.join(dst_dir, name)
    shutil.copy(good, bad)
    shutil.copy(good + ".json", bad + ".json")
    lmdb = os.path.join(os.path.dirname(good), "train_lmdb_ms256_q90.lmdb")
    shutil.copy(lmdb, os.path.join(dst_dir, os.path.basename(lmdb)))
    return bad


def _one_error(capsys, path, needle):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and path in err[0] and needle in err[0], err


def test_good_files_verify(built, capsys):
    src, _, files = built
    for path in files.values():
        assert main(["verify", path, "--deep"]) == 0
        assert main(["verify", path, "--dataset", "folder", "--src", src, "--split", "train"]) == 0
    assert "OK (12 records, 3 classes" in capsys.readouterr().out


def test_tampered_raw_pixel_caught_by_deep(built, tmp_path, capsys):
    from ffcv.reader import Reader
    good = built[2]["raw"]
    bad = _copy(good, str(tmp_path), "pixel.beton")
    ptr = int(Reader(bad).metadata["f0"][5]["data_ptr"])
    with open(bad, "r+b") as f:
        f.seek(ptr + 100)
        b = f.read(1)
        f.seek(ptr + 100)
        f.write(bytes([b[0] ^ 0xFF]))
    assert main(["verify", bad]) == 0  # FFCV keeps no checksum: only a content comparison sees it
    capsys.readouterr()
    assert main(["verify", bad, "--deep"]) == 1
    _one_error(capsys, bad, "sample 5: pixels differ")


def test_tampered_label_caught(built, tmp_path, capsys):
    from ffcv.reader import Reader
    from ffcv.types import HeaderType
    good = built[2]["jpg"]
    bad = _copy(good, str(tmp_path), "label.beton")
    r = Reader(bad)
    # The label of sample 7 lives in the metadata table after the header and field descriptors.
    offset = HeaderType.itemsize + r.field_descriptors.nbytes + 7 * r.metadata.dtype.itemsize + \
        r.metadata.dtype.fields["f1"][1]
    labels = np.array(r.metadata["f1"])
    with open(bad, "r+b") as f:
        f.seek(offset)
        f.write(np.int64((labels[7] + 1) % 3).tobytes())
    assert main(["verify", bad]) == 1
    _one_error(capsys, bad, "sample 7: label")


def test_truncated_file_and_missing_sidecar(built, tmp_path, capsys):
    good = built[2]["jpg"]
    cut = _copy(good, str(tmp_path), "cut.beton")
    with open(cut, "r+b") as f:
        f.truncate(os.path.getsize(good) // 2)
    assert main(["verify", cut]) == 1
    _one_error(capsys, cut, "cut.beton")
    lost = _copy(good, str(tmp_path), "lost.beton")
    os.remove(lost + ".json")
    assert main(["verify", lost]) == 1
    _one_error(capsys, lost, "missing")
