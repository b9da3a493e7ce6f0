"""Single-file checkpoints written atomically and read without unpickling arbitrary objects."""

import os
import re
import tempfile
from pathlib import Path

import torch


def save_atomic(obj, path):
    """torch.save to a temporary file in the same folder, fsync, then os.replace: readers see either the
    old file or the complete new one, never a torn write."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path, map_location="cpu"):
    """Load with weights_only=True: tensors, numbers, strings and containers only."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a torn or foreign file must name itself, not dump a traceback
        raise ValueError(f"{path}: not a loadable checkpoint ({_reason(e)})") from None


def _reason(e):
    """torch's error in one line, without its advice to load with weights_only=False (which would run
    whatever code the file carries)."""
    text = str(e)
    if "weights_only" in text:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        what = f" ({found.group(1)})" if found else ""
        return f"it holds pickled Python objects{what}, not only tensors; they are never unpickled"
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"
