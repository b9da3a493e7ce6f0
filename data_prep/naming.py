"""Output file names carry the settings that made them (ffcv-imagenet style), so files written with
different settings never overwrite each other and a config can name exactly what it trains on."""

import os


def lmdb_name(split, max_side, quality):
    """e.g. train_lmdb_ms256_q90.lmdb (ms0 = images kept at their original size)."""
    return f"{split}_lmdb_ms{max_side}_q{quality}.lmdb"


def ffcv_name(split, max_side, prob, quality, write_mode="proportion"):
    """e.g. train_ffcv_ms256_p0.50_q90.beton; a write mode other than 'proportion' is named too."""
    mode = "" if write_mode == "proportion" else f"_{write_mode}"
    return f"{split}_ffcv_ms{max_side}_p{prob:.2f}_q{quality}{mode}.beton"


def memory_name(split):
    """train.npz / val.npz: the in-RAM format of small datasets."""
    return f"{split}.npz"


def in_dir(out_dir, name):
    """Join and create the output folder."""
    os.makedirs(out_dir, exist_ok=True)
    return os.path.join(out_dir, name)
