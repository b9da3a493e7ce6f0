"""`verify`: check a written LMDB (or .npz) against itself and, when given, against its source.

Always: the file holds every page its meta pages use (a truncated copy would crash the reader), meta
present, count = number of records, every record parses, its payload matches its sha256 and
decodes, the chained digest of all records equals the one in meta (catches edits, deletions, swaps).
With a source: same source digest, same number of items (minus those reported skipped), same label for
every record. With `deep`: every source image is re-encoded and must give the stored bytes' hash.
"""

import hashlib
import io
import os

import numpy as np
from PIL import Image

from bip_dist.data.files import load_npz, open_lmdb
from bip_dist.data.records import read_meta, record_key, unpack_record
from data_prep.images import prepare


class VerifyError(ValueError):
    """The file does not match; the message names the file, the record and what differs."""


def verify_lmdb(path, source=None, deep=False):
    """Raise VerifyError on the first mismatch; return the meta dict when everything checks out."""
    if not os.path.isfile(path):
        raise VerifyError(f"{path}: not found (an unfinished conversion leaves only {path}.partial)")
    env = open_lmdb(path)  # checks size against the meta pages first: a truncated file would SIGBUS
    with env.begin() as txn:
        meta = read_meta(txn)
        if meta is None:
            raise VerifyError(f"{path}: no __meta__ record")
        n_keys = txn.stat()["entries"]
        if n_keys != meta["count"] + 1:
            raise VerifyError(f"{path}: {n_keys - 1} records, meta count says {meta['count']}")
        chain, labels, bad = "", [], []
        for i in range(meta["count"]):
            buf = txn.get(record_key(i))
            if buf is None:
                raise VerifyError(f"{path}: record {i} missing")
            # Every unreadable record is named, in this one pass, not just the first.
            try:
                label, payload, digest = unpack_record(buf, check=True)
                Image.open(io.BytesIO(payload)).load()
            except (ValueError, OSError, SyntaxError) as e:
                bad.append(f"{path}: record {i}: {e}")
                continue
            if not 0 <= label < len(meta["classes"]):
                raise VerifyError(f"{path}: record {i}: label {label} outside 0..{len(meta['classes']) - 1}")
            chain = hashlib.sha256((chain + bytes(buf[4:44]).hex()).encode()).hexdigest()
            labels.append(label)
        if bad:
            summary = [f"{path}: {len(bad)} of {meta['count']} records unreadable"] if len(bad) > 1 else []
            raise VerifyError("\n".join(bad + summary))
        if chain != meta["records_digest"]:
            raise VerifyError(f"{path}: records digest {chain[:12]}... != meta {meta['records_digest'][:12]}...")
        if source is not None:
            _against_source(path, meta, labels, source, txn if deep else None)
    env.close()
    return meta


def _against_source(path, meta, labels, source, txn):
    settings = meta["settings"]
    if settings["source_digest"] != source.digest():
        raise VerifyError(f"{path}: source digest differs from {source.root} (files or labels changed)")
    skipped = {s["index"] for s in meta["skipped"]}
    kept = [i for i in range(len(source)) if i not in skipped]
    if len(kept) != len(labels):
        raise VerifyError(f"{path}: {len(labels)} records, source has {len(kept)} usable images")
    for k, i in enumerate(kept):
        if labels[k] != source.labels[i]:
            raise VerifyError(f"{path}: record {k} label {labels[k]} != source {source.describe(i)} "
                              f"label {source.labels[i]}")
        if txn is not None:
            _, payload, err = prepare((i, source.task_src(i), settings["max_side"], settings["quality"]))
            stored = bytes(txn.get(record_key(k)))[12:12 + 32]
            if err or hashlib.sha256(payload).digest() != stored:
                raise VerifyError(f"{path}: record {k} content differs from {source.describe(i)}")


def verify_npz(path, source=None):
    """Check an in-RAM .npz: arrays present, shapes consistent, labels in range (and, with a source,
    labels and pixels equal the source's)."""
    x, y, classes = load_npz(path)
    if source is not None:
        if len(y) != len(source) or not np.array_equal(y, np.asarray(source.labels)):
            raise VerifyError(f"{path}: labels differ from {source.root}")
        if source.arrays is not None and not np.array_equal(x, source.arrays):
            raise VerifyError(f"{path}: pixels differ from {source.root}")
    return {"count": len(y), "classes": list(classes)}


def verify_folder(path, workers=0):
    """Decode every image of a class-folder tree (data.format=folder): `path`/train and `path`/val, val
    labelled by train's classes, or `path` as one split. Every unreadable file is named, in one pass."""
    from bip_dist.data.bad_samples import unreadable
    from bip_dist.data.datasets import FolderDataset

    splits = [os.path.join(path, s) for s in ("train", "val") if os.path.isdir(os.path.join(path, s))]
    classes, bad, count = None, [], 0
    for split in splits or [path]:
        ds = FolderDataset(split, classes=classes)
        classes = classes or ds.classes
        bad += [problem for _, problem in unreadable(ds, workers)]
        count += len(ds)
    if bad:
        summary = [f"{path}: {len(bad)} of {count} images unreadable"] if len(bad) > 1 else []
        raise VerifyError("\n".join(bad + summary))
    return {"count": count, "classes": classes}
