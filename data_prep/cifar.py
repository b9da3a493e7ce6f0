"""CIFAR-10 / CIFAR-100 python archives (the .tar.gz or its extracted folder), read with the restricted
unpickler: these files are pickles, and a pickle from the internet must not be able to run code."""

import os
import tarfile

import numpy as np

from data_prep.safe_pickle import safe_loads
from data_prep.sources import Source, SourceError

LAYOUT = {
    "cifar10": {"archive": "cifar-10-python.tar.gz", "folder": "cifar-10-batches-py",
                "train": [f"data_batch_{i}" for i in range(1, 6)], "val": ["test_batch"],
                "meta": "batches.meta", "names": b"label_names", "labels": b"labels"},
    "cifar100": {"archive": "cifar-100-python.tar.gz", "folder": "cifar-100-python",
                 "train": ["train"], "val": ["test"],
                 "meta": "meta", "names": b"fine_label_names", "labels": b"fine_labels"},
}


def _reader(src, lay):
    """A function name -> (bytes, display path) over the extracted folder or the archive."""
    for folder in (os.path.join(src, lay["folder"]), src):
        if os.path.isfile(os.path.join(folder, lay["meta"])):
            def read(name, folder=folder):
                p = os.path.join(folder, name)
                if not os.path.isfile(p):
                    raise SourceError(f"{p}: missing CIFAR batch file")
                with open(p, "rb") as f:
                    return f.read(), p
            return read
    archive = src if src.endswith(".tar.gz") else os.path.join(src, lay["archive"])
    if not os.path.isfile(archive):
        raise SourceError(f"{src}: neither {lay['folder']}/ nor {lay['archive']} found")
    tar = tarfile.open(archive, "r:gz")
    members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}

    def read(name):
        if name not in members:
            raise SourceError(f"{archive}: member {lay['folder']}/{name} missing")
        return tar.extractfile(members[name]).read(), f"{archive}:{members[name].name}"
    return read


def _get(d, key, where):
    if not isinstance(d, dict) or key not in d:
        raise SourceError(f"{where}: key {key.decode()!r} missing")
    return d[key]


def cifar(src, variant, split):
    """Source over CIFAR `variant` ('cifar10' / 'cifar100') split 'train' or 'val' (= test batch)."""
    lay = LAYOUT[variant]
    read = _reader(src, lay)
    raw, where = read(lay["meta"])
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in _get(safe_loads(raw, where),
                                                                                lay["names"], where)]
    xs, ys = [], []
    for name in lay[split]:
        raw, where = read(name)
        d = safe_loads(raw, where)
        data = np.asarray(_get(d, b"data", where))
        labels = np.asarray(_get(d, lay["labels"], where), dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
            raise SourceError(f"{where}: data must be uint8 N x 3072 with N labels, got {data.dtype} "
                              f"{data.shape} and {len(labels)} labels")
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(classes):
            raise SourceError(f"{where}: label {int(labels.max())} outside 0..{len(classes) - 1}")
        xs.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(labels)
    arrays = np.ascontiguousarray(np.concatenate(xs))
    return Source(f"{variant}/{split}", src, classes, np.concatenate(ys).tolist(), None, arrays)
