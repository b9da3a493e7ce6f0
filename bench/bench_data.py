"""Loader throughput of FFCV, LMDB and image-folder on an ImageNet-like set, same augmentation and workers.

Generates (once, cached in data/bench/) N JPEGs of ImageNet's typical size (500x375, quality 90),
converts them with data_prep (LMDB at max side 256, then FFCV from it), and times one pass of each
loader with the ImageNet train preset (RandomResizedCrop 224 + flip), as images/s and as a ratio to the
image-folder loader. Writes bench/data.json.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bip_dist.data import DataConfig, build_loaders  # noqa: E402
from data_prep.cli import main as prep  # noqa: E402


def make_images(root, n, classes=10, seed=0):
    """Textured 500x375 JPEGs (shapes + noise, so they compress like photos, ~60-120 KB at q90)."""
    if os.path.isdir(root) and sum(len(f) for _, _, f in os.walk(root)) >= n:
        return
    rng = np.random.default_rng(seed)
    for i in range(n):
        d = os.path.join(root, "train", f"n{i % classes:08d}")
        os.makedirs(d, exist_ok=True)
        w, h = (500, 375) if i % 4 else (375, 500)
        base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
        im = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(im)
        for _ in range(12):
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            draw.ellipse([x0, y0, x0 + int(rng.integers(20, 200)), y0 + int(rng.integers(20, 200))],
                         fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        im = im.filter(ImageFilter.SMOOTH)
        noise = rng.normal(0, 12, (h, w, 3))
        im = Image.fromarray(np.clip(np.asarray(im) + noise, 0, 255).astype(np.uint8))
        im.save(os.path.join(d, f"img_{i:05d}.JPEG"), quality=90)
    os.makedirs(os.path.join(root, "val"), exist_ok=True)


def throughput(fmt, root, workers, batch, train_file=""):
    cfg = DataConfig(dataset="imagenet", format=fmt, root=root, batch_size=batch, workers=workers,
                     val_batch_size=batch, train_file=train_file, val_file=train_file or "")
    ld = build_loaders(cfg, seed=0)
    ld.train.set_epoch(0)
    it, n = iter(ld.train), 0
    x, _ = next(it)  # warm-up batch: worker start, FFCV's JIT compile
    t0 = time.perf_counter()
    for x, y in it:
        n += x.shape[0]
    return n / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=2000, help="number of generated JPEGs (default: 2000)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="loader and converter workers")
    p.add_argument("--batch", type=int, default=64, help="batch size")
    p.add_argument("--root", default="data/bench", help="cache folder")
    p.add_argument("--out", default="bench/data.json")
    args = p.parse_args()
    src, out = os.path.join(args.root, "src"), os.path.join(args.root, "prepared")
    t0 = time.time()
    make_images(src, args.images)
    print(f"source: {args.images} JPEGs 500x375 q90 in {src} ({time.time() - t0:.0f}s)", flush=True)
    lmdb_file = os.path.join(out, "train_lmdb_ms256_q90.lmdb")
    ffcv_file = os.path.join(out, "train_ffcv_ms256_p0.50_q90.beton")
    conv = {}
    for fmt, path in (("lmdb", lmdb_file), ("ffcv", ffcv_file)):
        t = time.time()
        existed = os.path.exists(path)
        assert prep(["folder", "--src", src, "--out", out, "--splits", "train", "--format", fmt,
                     "--workers", str(args.workers), "--max-side", "256"]) == 0
        if not existed:
            conv[fmt] = args.images / (time.time() - t)
    rates = {"folder": throughput("folder", src, args.workers, args.batch, os.path.join(src, "train")),
             "lmdb": throughput("lmdb", out, args.workers, args.batch, lmdb_file),
             "ffcv": throughput("ffcv", out, args.workers, args.batch, ffcv_file)}
    print(f"\nloader throughput, RandomResizedCrop 224 + flip, {args.workers} workers, batch {args.batch}, "
          f"{os.cpu_count()} CPU cores")
    print("LMDB and FFCV store images pre-resized to max side 256 (done once at conversion); the image "
          "folder decodes the 500x375 originals every time.")
    print(f"{'format':<8}{'images/s':>10}{'vs folder':>11}")
    for k in ("folder", "lmdb", "ffcv"):
        print(f"{k:<8}{rates[k]:>10.0f}{rates[k] / rates['folder']:>10.2f}x")
    for k, v in conv.items():
        print(f"conversion to {k}: {v:.0f} images/s ({'from the source JPEGs' if k == 'lmdb' else 'from the LMDB'})")
    res = {"images": args.images, "workers": args.workers, "batch": args.batch, "cpu_count": os.cpu_count(),
           "images_per_s": rates, "ratio_to_folder": {k: v / rates["folder"] for k, v in rates.items()},
           "conversion_images_per_s": conv, "stored_max_side": 256}
    with open(args.out, "w") as f:
        json.dump(res, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
