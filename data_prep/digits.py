"""The demo dataset: scikit-learn's `load_digits()` (1,797 real 8x8 grayscale scans of handwritten
digits, 10 classes), upsampled to 32x32 RGB and split 1,497 / 300 with a fixed, stratified seed."""

import numpy as np
from PIL import Image

from data_prep.sources import Source

VAL_SIZE, SEED, SIDE = 300, 0, 32


def digits_sources(val_size=VAL_SIZE, seed=SEED):
    """(train Source, val Source) over in-memory 32x32x3 uint8 arrays."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    # 0..16 ink levels -> 0..255; bilinear upsampling keeps the strokes smooth at 32x32.
    small = np.clip(d.images * (255.0 / 16.0), 0, 255).astype(np.uint8)
    big = np.stack([np.asarray(Image.fromarray(im).resize((SIDE, SIDE), Image.Resampling.BILINEAR))
                    for im in small])
    rgb = np.repeat(big[..., None], 3, axis=3)
    idx = np.arange(len(rgb))
    tr, va = train_test_split(idx, test_size=val_size, random_state=seed, stratify=d.target)
    tr, va = np.sort(tr), np.sort(va)
    classes = [str(c) for c in range(10)]
    mk = lambda name, ix: Source(f"digits/{name}", "sklearn.datasets.load_digits", classes,  # noqa: E731
                                 d.target[ix].astype(int).tolist(), None, np.ascontiguousarray(rgb[ix]))
    return mk("train", tr), mk("val", va)
