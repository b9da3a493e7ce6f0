"""`verify` for FFCV .beton files.

FFCV stores no checksum, so the file is checked against its sidecar (`<name>.beton.json`) and, when the
LMDB it was built from sits beside it (or is given), against that LMDB's verified records:
- always: the header opens, fields are (image, label), the sample count equals the sidecar's, every
  sample has its allocation, every image decodes to the width and height its metadata claims, every
  label is a valid class;
- with the LMDB: the LMDB verifies, its records digest is the one the sidecar recorded, every label
  equals the LMDB record's;
- with `deep`: every image's pixels equal the LMDB image's (raw samples exactly, JPEG-compressed ones
  within the loss of re-encoding).
"""

import io
import json
import os

import numpy as np
from PIL import Image

from data_prep.verify import VerifyError, verify_lmdb

# Mean absolute difference (0-255 levels) above which a JPEG-compressed sample is not the LMDB image:
# re-encoding at quality >= 50 stays near 1-3 levels, a different image is tens of levels away.
_JPEG_TOLERANCE = 8.0


def verify_beton(path, lmdb_path=None, deep=False):
    """Raise VerifyError on the first mismatch; return the sidecar meta when everything checks out."""
    from ffcv.reader import Reader
    from ffcv.fields.rgb_image import IMAGE_MODES

    if not os.path.isfile(path):
        raise VerifyError(f"{path}: not found (an unfinished build leaves only {path}.partial)")
    meta = _sidecar(path)
    try:
        reader = Reader(path)
    except Exception as e:  # a damaged header surfaces as assorted numpy / assertion errors
        raise VerifyError(f"{path}: not a readable .beton ({type(e).__name__}: {e})") from None
    if reader.field_names != ["image", "label"]:
        raise VerifyError(f"{path}: fields {reader.field_names}, expected ['image', 'label']")
    if reader.num_samples != meta["count"]:
        raise VerifyError(f"{path}: {reader.num_samples} samples, sidecar count says {meta['count']}")
    images, labels = reader.metadata["f0"], reader.metadata["f1"]
    sizes = _allocations(path, reader)
    lmdb_path = lmdb_path or _beside(path, meta)
    ref = _Reference(lmdb_path, meta, path) if lmdb_path else None
    data = np.memmap(path, dtype=np.uint8, mode="r")
    n_classes = len(meta["classes"])
    for i in range(reader.num_samples):
        label = int(labels[i])
        if not 0 <= label < n_classes:
            raise VerifyError(f"{path}: sample {i}: label {label} outside 0..{n_classes - 1}")
        w, h, ptr = int(images[i]["width"]), int(images[i]["height"]), int(images[i]["data_ptr"])
        if ptr not in sizes or ptr + sizes[ptr] > len(data):
            raise VerifyError(f"{path}: sample {i}: image data at {ptr} is not allocated in the file")
        blob = data[ptr:ptr + sizes[ptr]]
        jpeg = images[i]["mode"] == IMAGE_MODES["jpg"]
        pixels = _decode(path, i, blob, w, h, jpeg)
        if ref is not None:
            ref.check(i, label, pixels if deep else None, jpeg)
    return meta


def _sidecar(path):
    side = path + ".json"
    try:
        with open(side) as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise VerifyError(f"{side}: missing (written last by the converter; without it the build did not "
                          f"finish)") from None
    except json.JSONDecodeError as e:
        raise VerifyError(f"{side}: not JSON ({e})") from None
    for key in ("kind", "count", "classes"):
        if key not in meta:
            raise VerifyError(f"{side}: no {key!r} entry")
    if meta["kind"] != "bip-ffcv":
        raise VerifyError(f"{side}: kind {meta['kind']!r}, expected 'bip-ffcv'")
    return meta


def _allocations(path, reader):
    """{data pointer: byte size} of the image field; every sample must have one."""
    table = reader.alloc_table
    return {int(p): int(s) for p, s in zip(table["ptr"], table["size"])}


def _beside(path, meta):
    name = meta.get("from_lmdb")
    cand = os.path.join(os.path.dirname(path), name) if name else None
    return cand if cand and os.path.isfile(cand) else None


def _decode(path, i, blob, w, h, jpeg):
    if jpeg:
        try:
            img = Image.open(io.BytesIO(blob.tobytes()))
            img.load()
        except OSError as e:
            raise VerifyError(f"{path}: sample {i}: JPEG does not decode ({e})") from None
        if img.size != (w, h):
            raise VerifyError(f"{path}: sample {i}: JPEG is {img.size[0]}x{img.size[1]}, metadata says {w}x{h}")
        return np.asarray(img.convert("RGB"))
    if blob.size != w * h * 3:
        raise VerifyError(f"{path}: sample {i}: {blob.size} raw bytes, metadata {w}x{h}x3 needs {w * h * 3}")
    return np.asarray(blob).reshape(h, w, 3)


class _Reference:
    """The LMDB the .beton was built from, verified first, then compared sample by sample."""

    def __init__(self, lmdb_path, meta, path):
        from bip_dist.data.datasets import LMDBDataset
        lmeta = verify_lmdb(lmdb_path)
        if meta.get("records_digest") != lmeta["records_digest"]:
            raise VerifyError(f"{path}: built from another version of {lmdb_path} (records digest differs)")
        if lmeta["count"] != meta["count"]:
            raise VerifyError(f"{path}: {meta['count']} samples, {lmdb_path} has {lmeta['count']}")
        self.ds, self.path, self.lmdb_path = LMDBDataset(lmdb_path), path, lmdb_path

    def check(self, i, label, pixels, jpeg):
        want_label, payload = self.ds.raw(i)
        if label != int(want_label):
            raise VerifyError(f"{self.path}: sample {i}: label {label} != {self.lmdb_path} record {i} label "
                              f"{int(want_label)}")
        if pixels is None:
            return
        want = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))
        if want.shape != pixels.shape:
            raise VerifyError(f"{self.path}: sample {i}: {pixels.shape[1]}x{pixels.shape[0]} image, "
                              f"{self.lmdb_path} record {i} is {want.shape[1]}x{want.shape[0]}")
        diff = np.abs(want.astype(np.int16) - pixels.astype(np.int16))
        if (diff.mean() > _JPEG_TOLERANCE) if jpeg else diff.any():
            raise VerifyError(f"{self.path}: sample {i}: pixels differ from {self.lmdb_path} record {i} "
                              f"(mean |diff| {diff.mean():.1f} levels)")
