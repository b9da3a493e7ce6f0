"""kill -9 mid-conversion + restart == uninterrupted run; verify catches tampering."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import lmdb

from bip_dist.data.records import HEADER, PROGRESS_KEY, record_key
from data_prep.cli import main
from tests.helpers import ROOT
from tests.helpers.archives import save
from tests.helpers.cli import child_env
from tests.helpers.prepared import lmdb_records as records


def _folder_src(root, n=40):
    for k in range(n):
        save(os.path.join(root, "train", f"c{k % 3}", f"img{k:03d}.jpg"), k, size=(40, 30))
    return root


def _committed(partial):
    if not os.path.exists(partial):
        return 0
    env = lmdb.open(partial, subdir=False, readonly=True, lock=False)
    with env.begin() as txn:
        raw = txn.get(PROGRESS_KEY)
    env.close()
    return json.loads(bytes(raw))["count"] if raw else 0


def test_kill9_resume_identical(tmp_path):
    src = _folder_src(str(tmp_path / "src"))
    cmd = [sys.executable, "-m", "data_prep", "folder", "--src", src, "--splits", "train", "--format", "lmdb",
           "--workers", "2", "--chunk", "4"]
    ref = str(tmp_path / "ref")
    assert main(cmd[3:] + ["--out", ref]) == 0
    out = str(tmp_path / "out")
    partial = os.path.join(out, "train_lmdb_ms256_q90.lmdb.partial")
    proc = subprocess.Popen(cmd + ["--out", out], env=child_env(BIP_PREP_SLEEP_PER_CHUNK="0.2"), cwd=ROOT,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while _committed(partial) < 12 and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # mid-run, between or during chunks
    proc.wait()
    done = _committed(partial)
    assert 12 <= done < 40 and not os.path.exists(os.path.join(out, "train_lmdb_ms256_q90.lmdb"))
    assert main(cmd[3:] + ["--out", out]) == 0
    got, want = records(os.path.join(out, "train_lmdb_ms256_q90.lmdb")), records(os.path.join(ref,
                                                                                         "train_lmdb_ms256_q90.lmdb"))
    assert got == want and len(got) == 41  # 40 records + __meta__, byte for byte
    assert not os.path.exists(partial)


def _tamper(path, fn):
    env = lmdb.open(path, subdir=False, lock=False, map_size=1 << 30)
    with env.begin(write=True) as txn:
        fn(txn)
    env.close()


def test_verify_catches_tampering(tmp_path, capsys):
    src = _folder_src(str(tmp_path / "src"), n=9)
    out = str(tmp_path / "out")
    assert main(["folder", "--src", src, "--splits", "train", "--out", out, "--format", "lmdb", "--workers", "0"]) == 0
    good = os.path.join(out, "train_lmdb_ms256_q90.lmdb")
    vargs = ["--dataset", "folder", "--src", src, "--split", "train"]
    assert main(["verify", good] + vargs) == 0

    def flip_pixel(txn):  # payload byte changed, header untouched
        v = bytearray(txn.get(record_key(3)))
        v[-10] ^= 0xFF
        txn.put(record_key(3), bytes(v))

    def relabel(txn):  # label changed and the payload hash kept consistent
        v = bytearray(txn.get(record_key(4)))
        v[4:12] = ((int.from_bytes(v[4:12], "little") + 1) % 3).to_bytes(8, "little")
        txn.put(record_key(4), bytes(v))

    def drop(txn):
        txn.delete(record_key(8))

    for name, fn, needle in [("pixel", flip_pixel, "record 3"), ("label", relabel, "digest"),
                             ("drop", drop, "records")]:
        bad = str(tmp_path / f"{name}.lmdb")
        shutil.copy(good, bad)
        _tamper(bad, fn)
        capsys.readouterr()
        assert main(["verify", bad]) == 1, name  # its own digests suffice, no source needed
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and bad in err[0] and needle in err[0], (name, err)
    assert HEADER.size == 48
