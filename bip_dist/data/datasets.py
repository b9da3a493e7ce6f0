"""Map-style datasets over the prepared formats: LMDB records, in-RAM .npz arrays, image folders."""

import io
import os
import sys

import numpy as np
import torch
from PIL import Image

from bip_dist.data.files import REBUILD, DataFileError, load_npz, open_lmdb
from bip_dist.data.folders import FolderError, links_note, list_images
from bip_dist.data.records import read_meta, record_key, unpack_record


class LMDBDataset(torch.utils.data.Dataset):
    """Images and labels of an LMDB written by `python -m data_prep`; items are (uint8 CHW tensor, label)
    after `transform`.

    The environment is opened lazily in the process that reads (and reopened after a fork), because an
    LMDB handle inherited across fork() is unsafe.
    """

    def __init__(self, path, transform=None):
        self.path, self.transform = str(path), transform
        env = open_lmdb(self.path)
        with env.begin() as txn:
            self.meta, entries = read_meta(txn), txn.stat()["entries"]
        env.close()  # closed before any DataLoader fork
        if self.meta is None or "count" not in self.meta:
            raise DataFileError(f"{self.path}: no __meta__ record; not a finished data_prep LMDB; {REBUILD}")
        if self.meta["count"] == 0:
            raise DataFileError(f"{self.path}: no records (0 images); {REBUILD}")
        if self.meta["count"] != entries - 1:
            raise DataFileError(f"{self.path}: {entries - 1} records, its meta says {self.meta['count']}; "
                                f"{REBUILD}")
        self.classes = list(self.meta["classes"])
        self._env, self._pid = None, None

    def __len__(self):
        return int(self.meta["count"])

    def _txn(self):
        if self._env is None or self._pid != os.getpid():
            self._env, self._pid = open_lmdb(self.path), os.getpid()
        return self._env.begin(buffers=True)

    def raw(self, i):
        """(label, encoded image bytes) of record i."""
        with self._txn() as txn:
            buf = txn.get(record_key(i))
            if buf is None:
                raise ValueError(f"record {i} missing")
            label, payload, _ = unpack_record(buf)
        return label, payload

    def describe(self, i):
        """Where record i lives, for messages."""
        return f"{self.path}: record {i}"

    def decode(self, i):
        """(RGB PIL image, label) of record i; ValueError / OSError when the record is damaged."""
        label, payload = self.raw(i)
        return Image.open(io.BytesIO(payload)).convert("RGB"), label

    def __getitem__(self, i):
        img, label = self.decode(i)
        return (self.transform(img) if self.transform else img), label

    def __getstate__(self):
        # Never pickle an open environment into a worker.
        return {**self.__dict__, "_env": None, "_pid": None}


class MemoryDataset(torch.utils.data.Dataset):
    """A whole split as one uint8 NHWC array in RAM, loaded from an .npz without pickle."""

    def __init__(self, path, transform=None):
        x, y, classes = load_npz(path)
        self.x = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        self.y = torch.from_numpy(y.astype(np.int64))
        self.classes = [str(c) for c in classes]
        self.transform = transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        x = self.x[i]
        return (self.transform(x) if self.transform else x), int(self.y[i])


def _rgb_loader(path):
    with open(path, "rb") as f:
        return Image.open(f).convert("RGB")


class FolderDataset(torch.utils.data.Dataset):
    """A class-per-folder image tree, listed as data_prep lists it (bip_dist.data.folders: labels by
    `classes`, default the tree's own class folders; directory links not followed, reported once on
    stderr); images are converted to RGB (CMYK / grayscale JPEGs exist)."""

    def __init__(self, root, transform=None, classes=None):
        self.root, self.transform, self.loader = str(root), transform, _rgb_loader
        try:
            paths, labels, self.classes, links = list_images(self.root, classes)
        except FolderError as e:
            raise DataFileError(str(e)) from None
        note = links_note(self.root, links)
        if note:
            print(f"[data] warning: {note}", file=sys.stderr, flush=True)
        if not paths:
            raise DataFileError(f"{self.root}: no .jpeg/.jpg/.png images in its class folders")
        self.samples = list(zip(paths, labels))
        self.targets = labels

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        img, label = self.decode(i)
        return (self.transform(img) if self.transform else img), label

    def describe(self, i):
        """The image file of sample i, for messages."""
        return self.samples[i][0]

    def decode(self, i):
        """(RGB PIL image, label) of sample i; OSError when the file is not a readable image."""
        path, label = self.samples[i]
        return self.loader(path), label
