"""Opening prepared data files with the checks that must pass before any of their content is used.

A damaged file must stop a run at start-up with one line that names it: a truncated LMDB otherwise kills
the process with SIGBUS (no message) at its first read, and a mismatched .npz trains on the wrong data.
"""

import os
import zipfile

import numpy as np

REBUILD = "rebuild it with `python -m data_prep`"


class DataFileError(ValueError):
    """A prepared data file (or one sample of it) is unusable; the message is one line naming it."""

    def __init__(self, message):
        # A DataLoader worker's exception reaches the trainer rebuilt as type(worker traceback text);
        # keep only our own line, which the traceback text ends with ("...DataFileError: <line>").
        if "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message)


def _data_file(path):
    """The file LMDB maps: `path` itself, or `path`/data.mdb for a directory-style environment."""
    return os.path.join(path, "data.mdb") if os.path.isdir(path) else path


def open_lmdb(path, rebuild=REBUILD):
    """Read-only environment for loading (no lock file: many readers; no readahead: random access),
    after checking that the file holds every page its meta pages say are in use. `rebuild` ends the
    messages: how to make the file again.

    LMDB maps the file and trusts it: reading a page cut off by a truncated copy raises SIGBUS, which
    kills the process without a message. Opening reads only the two meta pages, so the check fits in
    between.
    """
    import lmdb  # here, not at the top: runs on in-memory or FFCV data need no lmdb installed

    path = str(path)
    data = _data_file(path)
    if not os.path.isfile(data):
        raise DataFileError(f"{path}: not found")
    size = os.path.getsize(data)
    if size == 0:
        raise DataFileError(f"{path}: empty file (0 bytes), not an LMDB; {rebuild}")
    try:
        env = lmdb.open(path, subdir=os.path.isdir(path), readonly=True, lock=False, readahead=False,
                        meminit=False, max_readers=512)
    except (lmdb.InvalidError, lmdb.VersionMismatchError, lmdb.CorruptedError) as e:
        reason = str(e).removeprefix(path + ": ")
        raise DataFileError(f"{path}: not an LMDB file ({reason}); {rebuild}") from None
    except lmdb.Error as e:
        raise DataFileError(f"{path}: cannot open as LMDB ({str(e).removeprefix(path + ': ')})") from None
    need = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
    if size < need:
        env.close()
        raise DataFileError(f"{path}: truncated: {size} bytes, its LMDB meta pages need {need} "
                            f"({need - size} missing); copy it again or {rebuild}")
    return env


def _check_zip(path):
    """An .npz is a zip archive. numpy reads any other file as a pickle and, refusing that, calls it
    "pickled data": name what the file really is instead."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise DataFileError(f"{path}: not found") from None
    except OSError as e:
        raise DataFileError(f"{path}: cannot be read ({e.strerror})") from None
    if head.startswith(b"PK"):
        return
    if not head:
        raise DataFileError(f"{path}: empty file (0 bytes), not an .npz; {REBUILD}")
    if head.startswith(b"\x93NUMPY"):
        raise DataFileError(f"{path}: a single .npy array, not an .npz of x, y, classes; {REBUILD}")
    raise DataFileError(f"{path}: not an .npz: not a zip archive (it starts with {head!r}); {REBUILD}")


def load_npz(path):
    """(x, y, classes) of a `<split>.npz` written by data_prep, loaded without pickle and checked:
    x is N x H x W x 3 uint8, y holds N integer labels in 0..len(classes)-1."""
    _check_zip(path)
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataFileError(f"{path}: not found") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataFileError(f"{path}: not a readable .npz ({type(e).__name__}: {e}); {REBUILD}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise DataFileError(f"{path}: a single .npy array, not an .npz of x, y, classes; {REBUILD}")
    with z:
        missing = {"x", "y", "classes"} - set(z.files)
        if missing:
            raise DataFileError(f"{path}: missing arrays {sorted(missing)}; {REBUILD}")
        try:
            x, y, classes = z["x"], z["y"], z["classes"]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
            raise DataFileError(f"{path}: unreadable array ({type(e).__name__}: {e}); {REBUILD}") from None
    check_arrays(path, x, y, classes)
    return x, y, classes


def check_arrays(path, x, y, classes):
    """Raise DataFileError naming `path` unless x, y, classes form a consistent labelled image set."""
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3 or 0 in x.shape[1:]:
        raise DataFileError(f"{path}: x must be N x H x W x 3 uint8 images, got {x.dtype} "
                            f"{'x'.join(map(str, x.shape))}")
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataFileError(f"{path}: y must be a 1-D array of integer labels, got {y.dtype} "
                            f"{'x'.join(map(str, y.shape))}")
    if classes.ndim != 1 or classes.dtype.kind != "U" or len(classes) == 0:
        raise DataFileError(f"{path}: classes must be a non-empty 1-D array of names, got {classes.dtype} "
                            f"{'x'.join(map(str, classes.shape))}")
    if len(y) != len(x):
        raise DataFileError(f"{path}: {len(y)} labels for {len(x)} images; they must be equal")
    if len(x) == 0:
        raise DataFileError(f"{path}: no images")
    bad = np.flatnonzero((y < 0) | (y >= len(classes)))
    if len(bad):
        raise DataFileError(f"{path}: label {int(y[bad[0]])} of image {int(bad[0])} is outside "
                            f"0..{len(classes) - 1} ({len(bad)} of {len(y)} labels out of range)")
