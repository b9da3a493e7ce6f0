"""Fashion-MNIST (Zalando): four IDX files, gzip'd as distributed (Debian's dataset-fashion-mnist installs
them under /usr/share/datasets/fashion-mnist/) or already unpacked. 60,000 training and 10,000 test images
of 28x28 grey, 10 classes; the test images are the `val` split.

The grey images are stored as 3 identical channels (N x 28 x 28 x 3 uint8), as digits are, so every format
(LMDB JPEGs, FFCV's RGB field, the in-RAM arrays) and every model's 3-channel stem take them unchanged.
"""

import gzip
import os
import zlib

import numpy as np

from data_prep.sources import Source, SourceError

DEFAULT_SRC = "/usr/share/datasets/fashion-mnist"
FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "val": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
           "Ankle boot"]
UBYTE = 0x08  # the IDX type code of unsigned bytes, the only one Fashion-MNIST uses


def _locate(src, stem):
    """The file `stem` or `stem.gz` in src; one-line error naming both when neither exists."""
    for name in (stem + ".gz", stem):
        path = os.path.join(src, name)
        if os.path.isfile(path):
            return path
    raise SourceError(f"{os.path.join(src, stem)}[.gz]: not found (is {src} a Fashion-MNIST folder? Debian: "
                      f"apt-get install dataset-fashion-mnist)")


def _read_bytes(path):
    try:
        with open(path, "rb") as f:
            raw = f.read()
        return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    except EOFError:
        raise SourceError(f"{path}: truncated gzip stream") from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise SourceError(f"{path}: damaged gzip stream ({e})") from None


def read_idx(path, ndim):
    """The uint8 array of an IDX file with `ndim` dimensions (1: labels, 3: images), after checking its
    magic number and that the data is exactly as long as its dimensions say."""
    raw = _read_bytes(path)
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != (UBYTE << 8 | ndim):
        got = "none (file shorter than 4 bytes)" if magic is None else f"0x{magic:08x}"
        raise SourceError(f"{path}: not an IDX file of {ndim}-d unsigned bytes: magic number {got}, "
                          f"expected 0x{UBYTE << 8 | ndim:08x}")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise SourceError(f"{path}: truncated: {len(raw)} bytes, the header alone needs {head}")
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    need = int(np.prod(dims))
    if len(raw) - head != need:
        what = "truncated" if len(raw) - head < need else "too long"
        raise SourceError(f"{path}: {what}: header says {' x '.join(map(str, dims))} = {need} bytes of data, "
                          f"the file has {len(raw) - head}")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(dims)


def fashion_mnist(src, split):
    """Source over split 'train' (60,000) or 'val' (the 10,000 test images) of the IDX files in `src`."""
    src = src or DEFAULT_SRC
    if not os.path.isdir(src):
        raise SourceError(f"{src}: Fashion-MNIST folder not found (Debian: apt-get install dataset-fashion-mnist)")
    img_path, lab_path = (_locate(src, stem) for stem in FILES[split])
    images, labels = read_idx(img_path, 3), read_idx(lab_path, 1)
    if len(images) != len(labels):
        raise SourceError(f"{lab_path}: {len(labels)} labels, but {img_path} holds {len(images)} images")
    if labels.size and labels.max() >= len(CLASSES):
        raise SourceError(f"{lab_path}: label {int(labels.max())} outside 0..{len(CLASSES) - 1}")
    rgb = np.ascontiguousarray(np.repeat(images[..., None], 3, axis=3))
    return Source(f"fashion_mnist/{split}", src, list(CLASSES), labels.astype(int).tolist(), None, rgb)
