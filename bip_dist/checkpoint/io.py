"""Single-file checkpoints written atomically with a checksum, and read without unpickling arbitrary objects."""

import codecs
import errno
import json
import os
import re
import tempfile
import zlib
from pathlib import Path

import torch

SIDECAR = ".sum"  # final.pt -> final.pt.sum: {"crc32", "size"} of the file as written


class Summing:
    """A binary file wrapper that keeps the CRC-32 and length of everything written through it."""

    def __init__(self, f):
        self.f, self.crc, self.size = f, 0, 0

    def write(self, b):
        n = self.f.write(b)  # a buffered file writes all of b or raises
        self.crc = zlib.crc32(b, self.crc)
        self.size += memoryview(b).nbytes
        return n

    def record(self):
        return {"crc32": self.crc, "size": self.size}

    def __getattr__(self, name):  # tell, flush, fileno, close, ... of the real file
        return getattr(self.f, name)


class SaveFailed(RuntimeError):
    """A checkpoint could not be written; the message is one line saying what survives."""


def is_disk_full(exc):
    """Whether ENOSPC is behind `exc`: anywhere in its cause/context chain, or in the per-rank failures
    of a DCP CheckpointException (torch.save adds a misleading "unexpected pos" error on top)."""
    todo, seen = [exc], set()
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno == errno.ENOSPC or "No space left on device" in str(e):
            return True
        failures = getattr(e, "failures", None)
        todo += [e.__cause__, e.__context__]
        if isinstance(failures, dict):  # {rank: (exception, traceback)}
            todo += [f[0] if isinstance(f, tuple) else f for f in failures.values()]
    return False


def current_umask():
    """The process's umask, read without changing it (os.umask sets it, racing with writer threads)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _replace_from_temp(path, write):
    """Call write(file) on a temporary file beside `path`, fsync, then os.replace it into place: readers
    see either the old file or the complete new one, never a torn write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes it 0600; DCP's shards follow the umask: one checkpoint must be readable as a whole.
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as f:
            out = write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return out
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj):
    """A small JSON file, replaced atomically."""
    _replace_from_temp(path, lambda f: f.write(json.dumps(obj).encode()))


def save_atomic(obj, path, sidecar=False):
    """torch.save `obj` to `path` atomically; returns {"crc32", "size"} of the bytes written, which with
    `sidecar` also go to <path>.sum (removed first, so a kill in between leaves no stale sum)."""
    side = Path(str(path) + SIDECAR)
    if sidecar:
        side.unlink(missing_ok=True)

    def write(f):
        s = Summing(f)
        torch.save(obj, s)
        return s.record()

    rec = _replace_from_temp(path, write)
    if sidecar:
        write_json(side, rec)
    return rec


def load_checkpoint(path, map_location="cpu"):
    """Load with weights_only=True: tensors, numbers, strings and containers only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    foreign = _not_torch_file(path)
    if foreign:
        raise ValueError(f"{path}: not a loadable checkpoint ({foreign})")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a torn or foreign file must name itself, not dump a traceback
        raise ValueError(f"{path}: not a loadable checkpoint ({_reason(e)})") from None


def _not_torch_file(path):
    """Why `path` cannot be a torch.save file, judged by its first bytes (a zip archive, or a legacy
    pickle); None when it may be one. torch itself reports a text file as anything from a KeyError to
    pickled objects it refused."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "an empty file (0 bytes)"
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None
    try:  # incremental: a character cut at byte 512 is not a decoding error
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        text = None
    if text is not None and "\x00" not in text:
        first = text.strip().splitlines()[0][:40] if text.strip() else ""
        return f"a text file ({first!r} ...), not a torch.save archive"
    return f"not a torch.save archive (it begins with bytes {head[:8].hex()})"


def _reason(e):
    """torch's error in one line, without its advice to load with weights_only=False (which would run
    whatever code the file carries)."""
    text = str(e)
    if "weights_only" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return f"it holds pickled Python objects{what}, not only tensors; they are never unpickled"
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
