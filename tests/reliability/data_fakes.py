"""Tiny prepared data files and the two command lines (training, `data_prep verify`) for the data-fault
tests; a command runs in a forked child where the fault could kill the process that reads the file."""

import os
import sys
import tempfile
import traceback

import numpy as np

from data_prep.lmdb_writer import write_lmdb
from data_prep.memory_writer import write_npz
from data_prep.sources import Source

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = ["a", "b", "c"]


def image_source(n, seed=0):
    """n random 32x32 RGB images (noise: each JPEG spans a few KB, so files have many pages)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    return Source("fake", "fake", list(CLASSES), [i % len(CLASSES) for i in range(n)], None, x)


def make_lmdb(path, n=40):
    write_lmdb(image_source(n), str(path), max_side=0, quality=90, workers=0)
    return str(path)


def make_npz(path, n=24):
    write_npz(image_source(n), str(path))
    return str(path)


def train_argv(out_dir, *sets):
    """bip-train on the digits demo config, two steps, with `sets` (KEY=VALUE) overriding the data."""
    argv = ["--config", os.path.join(ROOT, "configs/digits/pretrain.yaml"), "--set", f"out_dir={out_dir}",
            "--set", "train.max_steps=2", "--set", "data.batch_size=4", "--set", "model.arch=resnet20s"]
    for s in sets:
        argv += ["--set", s]
    return argv


def in_child(fn, *args):
    """fn(*args) -> exit code, run in a forked copy of this process (no new imports, so milliseconds):
    (exit code, or -signal when it died of one, such as SIGBUS; its stderr lines without progress bars)."""
    with tempfile.TemporaryFile("w+") as err:
        pid = os.fork()
        if pid == 0:  # child: never returns into pytest
            code = 70
            try:
                os.dup2(err.fileno(), 2)
                sys.stdout, sys.stderr = open(os.devnull, "w"), err
                code = fn(*args)
            except SystemExit as e:
                code = e.code
            except BaseException:
                traceback.print_exc()  # an uncaught error: a traceback and exit 70
            finally:
                err.flush()
                os._exit(code if isinstance(code, int) else 1)
        status = os.waitpid(pid, 0)[1]
        err.seek(0)
        return os.waitstatus_to_exitcode(status), error_lines(err.read())


def error_lines(stderr):
    """The lines of `stderr` that are not tqdm progress updates."""
    lines = [ln.rsplit("\r", 1)[-1] for ln in stderr.splitlines()]
    return [ln for ln in lines if ln.strip() and "it/s]" not in ln and "img/s]" not in ln]
