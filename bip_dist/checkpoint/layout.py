"""Checkpoint folders, the `latest` / `best` pointers, and the rules that make a crash harmless.

    checkpoints/step_00001200_ep0003/   a complete checkpoint (DCP shards + .metadata, extra.pt,
                                        rank_00000.pt ...)
    checkpoints/.step_00001500_ep0003.tmp/   being written; never read, removed at the next start
    checkpoints/latest, checkpoints/best     one line: the folder name; replaced atomically, last
    checkpoints/step_00000900_ep0002.bad/   failed its checks on resume: set aside, never read again
A folder is renamed to its final name only after every rank has written its share, and a pointer is
replaced only after the folder it names exists, so a kill at any point leaves the previous checkpoint
complete and `latest` naming it. Names sort by (step, epoch): an epoch-end checkpoint follows the
mid-epoch one at the same step.
"""

import os
import re
import shutil
from pathlib import Path

EXTRA = "extra.pt"
_NAME = re.compile(r"step_\d{8,}_ep\d{4,}")


def step_name(step, epoch):
    return f"step_{step:08d}_ep{epoch:04d}"


def tmp_name(name):
    return f".{name}.tmp"


def rank_file(rank):
    return f"rank_{rank:05d}.pt"


def is_complete(folder):
    """A published checkpoint folder: DCP metadata and rank 0's extra state are both present."""
    folder = Path(folder)
    return folder.is_dir() and (folder / ".metadata").is_file() and (folder / EXTRA).is_file()


class Layout:
    """The `checkpoints/` folder of one run."""

    def __init__(self, root):
        self.root = Path(root)

    def read_pointer(self, which):
        p = self.root / which
        return p.read_text().strip() if p.is_file() else None

    def write_pointer(self, which, name):
        tmp = self.root / f".{which}.tmp"
        with open(tmp, "w") as f:
            f.write(name + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / which)

    def complete(self):
        """Published checkpoint folders, oldest first."""
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.glob("step_*") if _NAME.fullmatch(p.name) and is_complete(p))

    def newest_first(self):
        """Complete folders, the one `latest` names first, then the others newest first."""
        done = self.complete()[::-1]
        name = self.read_pointer("latest")
        first = [self.root / name] if name and self.root / name in done else []
        return first + [p for p in done if p.name != name]

    def newest(self):
        """The folder `latest` names if it is complete, else the newest complete folder, else None."""
        done = self.newest_first()
        return done[0] if done else None

    def publish(self, tmp, name):
        """Rename the finished temporary folder to `name` (replacing an older folder of that name)."""
        final = self.root / name
        if final.exists():
            trash = self.root / f".{name}.old"
            shutil.rmtree(trash, ignore_errors=True)
            os.replace(final, trash)
            os.replace(tmp, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(self.root)
        return final

    def prune(self, keep):
        """Delete all but the newest `keep` complete folders, sparing the one `best` names."""
        best = self.read_pointer("best")
        for old in self.complete()[:-keep]:
            if old.name != best:
                shutil.rmtree(old, ignore_errors=True)

    def set_aside(self, folder):
        """Rename a bad checkpoint folder to <name>.bad (numbered if taken): kept for inspection, but no
        longer a candidate for resume nor counted by `prune`. Returns the new path."""
        target, n = self.root / f"{folder.name}.bad", 1
        while target.exists():
            n += 1
            target = self.root / f"{folder.name}.bad{n}"
        os.replace(folder, target)
        return target

    def clean_partial(self):
        """Remove folders left by a save that was interrupted (called by rank 0 before training)."""
        if self.root.is_dir():
            for p in self.root.glob(".step_*"):
                shutil.rmtree(p, ignore_errors=True)


def _fsync_dir(path):
    """Persist the rename itself (POSIX: a directory entry is durable once its directory is synced)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
