"""LMDB -> FFCV .beton. FFCV writes a file in one go, so it is built from the finished LMDB (cheap: the
images are already cleaned and resized) into a temporary name and renamed when complete; an interrupted
build is simply redone. A `<name>.beton.json` sidecar holds the class list and count for the loaders."""

import io
import json
import os

import numpy as np
from PIL import Image

from bip_dist.data.datasets import LMDBDataset


class _Decoded:
    """Indexed (HWC uint8 array, label) view of an LMDB, as FFCV's DatasetWriter wants."""

    def __init__(self, path):
        self.ds = LMDBDataset(path)

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        label, payload = self.ds.raw(i)
        return np.asarray(Image.open(io.BytesIO(payload)).convert("RGB")), int(label)


def write_ffcv(lmdb_path, out, *, max_resolution, quality, prob, write_mode="proportion", workers=2,
               force=False):
    """Write `out` (.beton) from `lmdb_path`; returns its sidecar meta."""
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    side = out + ".json"
    if os.path.exists(out) and os.path.exists(side) and not force:
        print(f"[prep] {out}: exists, kept (use --force to rebuild)", flush=True)
        with open(side) as f:
            return json.load(f)
    src = _Decoded(lmdb_path)
    tmp = out + ".partial"
    fields = {"image": RGBImageField(write_mode=write_mode, max_resolution=max_resolution or 100000,
                                     jpeg_quality=quality, compress_probability=prob),
              "label": IntField()}
    DatasetWriter(tmp, fields, num_workers=max(1, workers)).from_indexed_dataset(src)
    meta = {"kind": "bip-ffcv", "count": len(src), "classes": src.ds.classes, "from_lmdb": os.path.basename(lmdb_path),
            "settings": {"max_resolution": max_resolution, "jpeg_quality": quality, "compress_probability": prob,
                         "write_mode": write_mode}, "records_digest": src.ds.meta["records_digest"]}
    with open(side + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(side + ".tmp", side)
    os.replace(tmp, out)  # last: the .beton appears only when complete and described
    return meta
