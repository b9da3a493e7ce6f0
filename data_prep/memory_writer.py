"""Source -> `<split>.npz` (x: N x H x W x 3 uint8, y: int64, classes: str): the in-RAM format for small
datasets (CIFAR, digits, Tiny-ImageNet). Lossless, no pickle (readers use allow_pickle=False)."""

import os

import numpy as np

from data_prep.images import BAD_IMAGE_ERRORS, decode_array


def write_npz(source, out, force=False):
    """Decode every image of `source` into one array and save it atomically to `out`."""
    if os.path.exists(out) and not force:
        print(f"[prep] {out}: exists, kept (use --force to rebuild)", flush=True)
        return
    if source.arrays is not None:
        x = source.arrays
    else:
        imgs, bad = [], []
        for i in range(len(source)):
            try:
                imgs.append(decode_array(source.task_src(i)))
            except BAD_IMAGE_ERRORS as e:
                bad.append(f"{source.describe(i)}: {type(e).__name__}: {e}")
        if bad:
            raise ValueError("\n".join(bad))
        shapes = {im.shape for im in imgs}
        if len(shapes) != 1:
            raise ValueError(f"{source.root}: the memory format needs equal image sizes, found {sorted(shapes)[:3]}")
        x = np.stack(imgs)
    tmp = out + ".partial.npz"
    np.savez(tmp, x=x, y=np.asarray(source.labels, dtype=np.int64), classes=np.asarray(source.classes, dtype=str))
    os.replace(tmp, out)
