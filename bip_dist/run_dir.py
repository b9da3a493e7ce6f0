"""Run folders: <out_dir>/<name>/<mode>/<config-hash>/, holding the resolved config and code revision,
and the claim one process holds on its folder (a lock naming it) while it trains there."""

import errno
import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from bip_dist.config import config_hash, config_to_dict


def run_dir_for(cfg):
    return Path(cfg.out_dir) / cfg.name / cfg.mode / config_hash(cfg)


def git_revision():
    """The code revision, with '+dirty' when the tree has uncommitted changes; 'unknown' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def prepare_run_dir(cfg, write=True):
    """Create the run folder and write config.yaml and git_rev.txt before step 0 (main rank only)."""
    d = run_dir_for(cfg)
    if write:
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        (d / "git_rev.txt").write_text(git_revision() + "\n")
    return d


def note(run_dir, line):
    """One line for the user, on stderr and appended to the run's log.txt (best effort: the disk may be full)."""
    print(f"bip-train: {line}", file=sys.stderr, flush=True)
    try:
        with open(Path(run_dir) / "log.txt", "a") as f:
            f.write(line + "\n")
    except OSError:
        pass


class RunDirError(ValueError):
    """The run folder cannot be used by this process (in use, or holding another run); one line."""


LOCK = ".lock"


class RunLock:
    """An exclusive flock on <run>/.lock, which names its holder. The kernel drops it when the holder
    dies, so a crashed run never blocks the next one; two live processes can never share a run folder."""

    def __init__(self, run_dir):
        self.path, self.fd = Path(run_dir) / LOCK, None

    def acquire(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 512).decode(errors="replace").strip() or "another process"
                os.close(fd)
                raise RunDirError(f"{self.path.parent}: in use by {holder} (lock file {self.path})") from None
            try:
                if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)  # the folder was moved aside while we waited: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"
                     .encode())
        self.fd = fd
        return self

    def release(self):
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock; the file stays, naming nobody alive
            self.fd = None


def earlier_run(run_dir):
    """What in `run_dir` shows that a run already trained there (checkpoints, final.pt), or None."""
    ck = Path(run_dir) / "checkpoints"
    names = sorted(p.name for p in ck.glob("step_*")) if ck.is_dir() else []
    if names:
        return f"checkpoints up to {names[-1]}"
    return "final.pt" if (Path(run_dir) / "final.pt").is_file() else None


def move_aside(run_dir, lock):
    """Rename the run folder to .<name>.old-<time> beside it and lock a fresh, empty one; returns the old
    folder's new path and the new lock. Hidden, so globs over run folders (the `<hash>` placeholder of
    source_net, sweeps) keep finding only live runs. The new lock is taken before the old one is let go,
    so no other process slips in."""
    d = Path(run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    old, n = d.with_name(f".{d.name}.old-{stamp}"), 1
    while old.exists():
        n += 1
        old = d.with_name(f".{d.name}.old-{stamp}-{n}")
    os.replace(d, old)
    d.mkdir(parents=True)
    fresh = RunLock(d).acquire()
    lock.release()
    return old, fresh


def claim(cfg, overwrite=False):
    """Lock this run's folder for this process (main rank) and say how to go on: (lock, result) where
    `result` is the finished run's result.json (nothing to train), or None to train. A folder holding an
    unfinished earlier run is refused unless `ckpt.resume` continues it or `overwrite` moves it aside."""
    d = run_dir_for(cfg)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(_unwritable(e, d, "cannot create the run folder")) from None
    try:
        lock = RunLock(d).acquire()
    except OSError as e:
        done = d / "result.json"
        held = f", which holds a finished run (its result: {done})" if done.is_file() else ""
        raise RunDirError(_unwritable(e, d, f"cannot create the lock file of the run folder{held}")) from None
    try:
        if overwrite and any(p.name != LOCK for p in d.iterdir()):
            old, lock = move_aside(d, lock)
            note(d, f"moved the earlier run aside to {old}")
        elif (d / "result.json").is_file():
            return lock, json.loads((d / "result.json").read_text())
        elif not cfg.ckpt.resume and (found := earlier_run(d)):
            raise RunDirError(f"{d}: holds an earlier run ({found}); continue it with --resume auto, or "
                              "start over with --overwrite (moves it aside)")
    except OSError as e:  # --overwrite in a folder whose parent is read-only
        lock.release()
        raise RunDirError(_unwritable(e, d, "cannot move the earlier run in the run folder aside")) from None
    except BaseException:
        lock.release()
        raise
    return lock, None


def _unwritable(err, run_dir, what):
    """One line for an OSError met while taking `run_dir`: the path, the system's reason, what failed and
    what to change."""
    where = "" if str(err.filename) == str(run_dir) else f" {run_dir}"
    fix = "shorten name or out_dir" if err.errno == errno.ENAMETOOLONG else "set out_dir to a writable folder"
    return f"{err.filename or run_dir}: {err.strerror}; {what}{where} ({fix})"
