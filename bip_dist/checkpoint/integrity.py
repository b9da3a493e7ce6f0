"""Checksums of checkpoint files: recorded as the bytes are written, checked before a checkpoint is read.

Every rank of a sharded save records the CRC-32 and size of each file it writes (its DCP shards and its
rank_<r>.pt; rank 0 also extra.pt and .metadata) in checksums_<r>.json inside the folder. A single-file
checkpoint (final.pt) gets <name>.sum beside it. Hashing the bytes on their way to the file costs no
second read, and for an asynchronous save it happens in the background writer thread. A flipped bit
would otherwise load silently (torch.load does not check the zip CRCs), and a truncated file fails deep
inside DCP with a traceback that names no file.

A checkpoint also says in itself that its checksums were written (CHECKSUMMED: a key of extra.pt, or of
final.pt), so a lost checksum file is an error, not a pass: only checkpoints from before checksums
existed load unchecked, and verify says so (UNCHECKED).
"""

import json
import zlib
from pathlib import Path

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.io import SIDECAR, load_checkpoint
from bip_dist.checkpoint.layout import EXTRA

_CHUNK = 1 << 22
CHECKSUMMED = "checksums_written"  # True in extra.pt / final.pt: their checksum files must exist
UNCHECKED = "written before checksums existed"


class BadCheckpoint(ValueError):
    """A checkpoint whose files are missing, truncated, corrupted or unreadable (the message names it)."""


def _file_sum(path):
    crc, size = 0, 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc, size = zlib.crc32(chunk, crc), size + len(chunk)
    return {"crc32": crc, "size": size}


def _check(folder, name, want):
    """None if `folder/name` has the recorded size and CRC, else why not."""
    p = folder / name
    if not p.is_file():
        return f"{name} is missing"
    size = p.stat().st_size
    if size != want["size"]:
        return f"{name} is truncated ({size} of {want['size']} bytes)" if size < want["size"] else \
            f"{name} has {size} bytes, {want['size']} were written"
    if _file_sum(p)["crc32"] != want["crc32"]:
        return f"{name} is corrupted (checksum mismatch)"
    return None


def _read_records(folder):
    """{file name: record} from every checksums_<r>.json of `folder`."""
    out = {}
    for m in sorted(folder.glob("checksums_*.json")):
        try:
            out.update(json.loads(m.read_text()))
        except (OSError, ValueError) as e:
            raise BadCheckpoint(f"{folder}: {m.name} is unreadable ({type(e).__name__})") from None
    return out


def _load_plain(path):
    """The dict a checkpoint file holds ({} for anything else); unreadable is a BadCheckpoint."""
    try:
        ck = load_checkpoint(path)
    except ValueError as e:
        raise BadCheckpoint(str(e)) from None
    return ck if isinstance(ck, dict) else {}


def _verify_folder(folder):
    records = _read_records(folder)
    if not (folder / EXTRA).is_file():
        raise BadCheckpoint(f"{folder}: {EXTRA} is missing")
    try:
        needed = dcp_io.storage_files(folder)
    except Exception as e:  # a torn or foreign .metadata: name it, not a deep DCP traceback
        raise BadCheckpoint(f"{folder}: .metadata is unreadable ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''})") from None
    for name, end in sorted(needed.items()):
        if name not in records:
            have = (folder / name).stat().st_size if (folder / name).is_file() else None
            if have is None or have < end:
                raise BadCheckpoint(f"{folder}: {name} is {'missing' if have is None else 'truncated'}")
    if not records:
        if _load_plain(folder / EXTRA).get(CHECKSUMMED):
            raise BadCheckpoint(f"{folder}: its checksum files (checksums_*.json) are missing, though {EXTRA} "
                                "records that they were written")
        return f"no checksums recorded ({UNCHECKED}); its files are all present, their contents unchecked"
    unlisted = sorted(p.name for p in folder.iterdir()
                      if p.is_file() and p.name not in records and not p.name.startswith("checksums_"))
    if unlisted:
        raise BadCheckpoint(f"{folder}: no checksum recorded for {unlisted[0]} (a rank's checksums are lost)")
    for name, want in sorted(records.items()):
        why = _check(folder, name, want)
        if why:
            raise BadCheckpoint(f"{folder}: {why}")
    return f"{len(records)} files match their checksums"


def _verify_file(path):
    side = Path(str(path) + SIDECAR)
    if not side.is_file():
        ck = _load_plain(path)
        if ck.get(CHECKSUMMED):
            raise BadCheckpoint(f"{path}: its checksum file {side.name} is missing, though {path.name} "
                                "records that it was written")
        if "weight_opt" in ck:
            return f"no checksum recorded ({UNCHECKED}); its contents are unchecked"
        return "no checksum recorded (not a training checkpoint: an exported or consolidated model)"
    try:
        want = json.loads(side.read_text())
    except (OSError, ValueError) as e:
        raise BadCheckpoint(f"{side}: unreadable ({type(e).__name__})") from None
    why = _check(path.parent, path.name, want)
    if why:
        raise BadCheckpoint(f"{path.parent}: {why}")
    return "matches its checksum"


def verify(path):
    """Check the checkpoint file or folder `path` against its recorded checksums; returns a short note on
    what was checked, raises BadCheckpoint naming the first bad file."""
    p = Path(path)
    return _verify_folder(p) if p.is_dir() else _verify_file(p)
