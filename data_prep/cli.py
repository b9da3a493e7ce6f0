"""Convert datasets into the formats bip-dist loads (LMDB, FFCV, in-RAM .npz) and verify written files.

`python -m data_prep <subcommand>`, or the console script `bip-prep`. Every error is one line per problem,
with a non-zero exit.
"""

import argparse
import os
import sys
import time

from data_prep import sources
from data_prep.cifar import cifar
from data_prep.digits import digits_sources
from data_prep.fashion import DEFAULT_SRC as FASHION_SRC
from data_prep.fashion import fashion_mnist
from data_prep.lmdb_writer import BadInputError, write_lmdb
from data_prep.memory_writer import write_npz
from data_prep.naming import ffcv_name, in_dir, lmdb_name, memory_name
from data_prep.safe_pickle import UnsafePickleError
from data_prep.verify import VerifyError, verify_folder, verify_lmdb, verify_npz

FORMATS = {"lmdb": ["lmdb"], "ffcv": ["ffcv"], "memory": ["memory"], "both": ["lmdb", "ffcv"],
           "all": ["lmdb", "ffcv", "memory"]}
# Per subcommand: source reader, default formats, default max side.
DATASETS = {
    "imagenet": (sources.imagenet, "both", 256),
    "tiny-imagenet": (sources.tiny_imagenet, "lmdb", 0),
    "cifar10": (lambda src, split: cifar(src, "cifar10", split), "memory", 0),
    "cifar100": (lambda src, split: cifar(src, "cifar100", split), "memory", 0),
    "folder": (lambda src, split: sources.split_folders(src, split), "lmdb", 256),
    "fashion-mnist": (fashion_mnist, "memory", 0),
}
# Subcommands whose source has a usual place (a Debian package) and output folder.
DEFAULT_SRC = {"fashion-mnist": FASHION_SRC}
DEFAULT_OUT = {"fashion-mnist": "data/fashion_mnist"}
HELP = {
    "imagenet": "ILSVRC-2012: SRC/train/<wnid>/*.JPEG, SRC/val/ in class folders or flat + LOC_val_solution.csv",
    "tiny-imagenet": "Tiny-ImageNet-200: SRC/wnids.txt, train/<wnid>/images/, val/images + val_annotations.txt",
    "cifar10": "CIFAR-10 python version: SRC/cifar-10-python.tar.gz or SRC/cifar-10-batches-py/",
    "cifar100": "CIFAR-100 python version: SRC/cifar-100-python.tar.gz or SRC/cifar-100-python/",
    "folder": "any class-per-folder tree: SRC/train/<class>/*.jpg and SRC/val/<class>/*.jpg",
    "fashion-mnist": "Fashion-MNIST: SRC/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] (60,000 / 10,000 "
                     "28x28 grey images, stored as 3-channel); val = the test images",
}


def _formats(text):
    """'both' / 'all' / a comma list of lmdb, ffcv, memory -> list of formats."""
    out = []
    for part in text.split(","):
        part = part.strip()
        if part not in FORMATS:
            raise argparse.ArgumentTypeError(f"--format: {part!r} is not one of {', '.join(sorted(FORMATS))}")
        out += [f for f in FORMATS[part] if f not in out]
    return out


def _common(p, fmt, max_side, out=None):
    p.add_argument("--out", required=out is None, default=out,
                   help="output folder (created); files are named by their settings"
                        + (f" (default: {out})" if out else ""))
    p.add_argument("--format", default=_formats(fmt), type=_formats,
                   help=f"what to write, comma-separated: lmdb, ffcv (.beton, built from the LMDB), memory "
                        f"(.npz); both = lmdb,ffcv; all = all three (default: {fmt})")
    p.add_argument("--splits", default="train,val", help="comma-separated splits (default: train,val)")
    p.add_argument("--max-side", type=int, default=max_side,
                   help=f"resize images whose longer side exceeds this, once, at write time; 0 = keep "
                        f"(default: {max_side})")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality of stored images (default: 90)")
    p.add_argument("--compress-prob", type=float, default=0.5,
                   help="FFCV: fraction of images stored as JPEG in write mode 'proportion' (default: 0.5)")
    p.add_argument("--write-mode", default="proportion", choices=("raw", "jpg", "smart", "proportion"),
                   help="FFCV RGBImageField write mode (default: proportion)")
    p.add_argument("--workers", type=int, default=os.cpu_count(),
                   help="decode/resize/encode processes (default: all cores; 0 = in-process)")
    p.add_argument("--chunk", type=int, default=256, help="LMDB: images per committed transaction (default: 256)")
    p.add_argument("--skip-bad", action="store_true",
                   help="leave undecodable images out and write a JSON report (default: stop and name them)")
    p.add_argument("--force", action="store_true", help="rebuild outputs that already exist")


def _parser():
    p = argparse.ArgumentParser(prog="bip-prep", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name, (_, fmt, ms) in DATASETS.items():
        s = sub.add_parser(name, help=HELP[name], description=HELP[name])
        src = DEFAULT_SRC.get(name)
        s.add_argument("--src", required=src is None, default=src,
                       help="the source folder (or archive) as downloaded" + (f" (default: {src})" if src else ""))
        _common(s, fmt, ms, out=DEFAULT_OUT.get(name))
    d = sub.add_parser("digits", help="scikit-learn digits (1,797 8x8 scans) as 32x32 RGB, 1,497/300 split",
                       description="The demo dataset: writes train.npz/val.npz and LMDB files to --out.")
    _common(d, "memory,lmdb", 0, out="data/digits")
    v = sub.add_parser("verify", help="check a written .lmdb / .beton / .npz (and, with --src, against its "
                                      "source)",
                       description="Check every record of FILE; with --dataset/--src also count, labels, and "
                                   "(--deep) content against the source images. A .beton is checked against "
                                   "its sidecar and the LMDB it was built from (beside it, or --lmdb); "
                                   "--src then checks that LMDB against the source.")
    v.add_argument("file", help="the .lmdb, .beton or .npz to check, or a class-folder tree (data.format "
                                "folder: DIR/train and DIR/val, or one split), whose every image is decoded")
    v.add_argument("--lmdb", help=".beton only: the LMDB it was built from (default: the one named in its "
                                  "sidecar, if it is in the same folder)")
    v.add_argument("--dataset", choices=sorted(DATASETS) + ["digits"], help="source kind (for --src)")
    v.add_argument("--src", help="source folder the file was made from")
    v.add_argument("--split", default=None, help="train or val (default: from the file name)")
    v.add_argument("--deep", action="store_true", help="re-encode every source image and compare its hash; "
                                                          ".beton: compare every image's pixels with the LMDB's")
    v.add_argument("--workers", type=int, default=os.cpu_count(),
                   help="class-folder tree: decoding processes (default: all cores; 0 = in-process)")
    return p


def _source(dataset, src, split):
    if dataset == "digits":
        return digits_sources()[0 if split == "train" else 1]
    return DATASETS[dataset][0](src or DEFAULT_SRC.get(dataset), split)


def _convert(args):
    splits = [s.strip() for s in args.splits.split(",") if s.strip()]
    for split in splits:
        if split not in ("train", "val"):
            raise ValueError(f"--splits: {split!r} is not train or val")
    # Every split's source is read and checked before anything is written: a bad test file leaves no
    # half-prepared dataset behind.
    t0 = time.time()
    srcs = {split: _source(args.cmd, getattr(args, "src", None), split) for split in splits}
    for split in splits:
        src = srcs[split]
        print(f"[prep] {src.name}: {len(src)} images, {len(src.classes)} classes", flush=True)
        formats = args.format
        if "memory" in formats:
            write_npz(src, in_dir(args.out, memory_name(split)), force=args.force)
        if "lmdb" in formats or "ffcv" in formats:
            lpath = in_dir(args.out, lmdb_name(split, args.max_side, args.quality))
            t1, existed = time.time(), os.path.exists(lpath) and not args.force
            meta = write_lmdb(src, lpath, max_side=args.max_side, quality=args.quality, workers=args.workers,
                              skip_bad=args.skip_bad, chunk=args.chunk, force=args.force)
            dt = time.time() - t1
            if not existed:
                    print(f"[prep] {lpath}: {meta['count']} records ({meta['count'] / max(dt, 1e-9):.0f} images/s)",
                      flush=True)
        if "ffcv" in formats:
            from data_prep.ffcv_writer import write_ffcv
            fpath = in_dir(args.out, ffcv_name(split, args.max_side, args.compress_prob, args.quality,
                                                args.write_mode))
            existed = os.path.exists(fpath) and not args.force
            t1 = time.time()
            meta = write_ffcv(lpath, fpath, max_resolution=args.max_side, quality=args.quality,
                              prob=args.compress_prob, write_mode=args.write_mode, workers=max(1, args.workers),
                              force=args.force)
            if not existed:
                dt = time.time() - t1
                print(f"[prep] {fpath}: {meta['count']} samples ({meta['count'] / max(dt, 1e-9):.0f} images/s)",
                      flush=True)
        print(f"[prep] {src.name}: done in {time.time() - t0:.1f}s", flush=True)
        t0 = time.time()


def _verify(args):
    source = None
    if args.dataset:
        split = args.split or os.path.basename(args.file).split("_")[0].split(".")[0]
        source = _source(args.dataset, args.src, split)
    if os.path.isdir(args.file) and not os.path.isfile(os.path.join(args.file, "data.mdb")):
        meta = verify_folder(args.file, args.workers)
    elif args.file.endswith(".npz"):
        meta = verify_npz(args.file, source)
    elif args.file.endswith(".beton"):
        meta = _verify_beton(args, source)
    else:
        meta = verify_lmdb(args.file, source, deep=args.deep)
    print(f"[verify] {args.file}: OK ({meta['count']} records, {len(meta['classes'])} classes"
          f"{', checked against ' + source.name if source else ''})")


def _verify_beton(args, source):
    from data_prep.verify_ffcv import verify_beton
    meta = verify_beton(args.file, args.lmdb, deep=args.deep)
    if source is not None:
        lmdb_path = args.lmdb or os.path.join(os.path.dirname(args.file), meta.get("from_lmdb", ""))
        if not os.path.isfile(lmdb_path):
            raise VerifyError(f"{args.file}: --src needs the LMDB it was built from (--lmdb); "
                              f"{lmdb_path} not found")
        verify_lmdb(lmdb_path, source, deep=args.deep)
    return meta


def main(argv=None):
    """CLI entry point; returns the exit status (0 ok, 1 bad input / mismatch, 2 usage)."""
    args = _parser().parse_args(argv)
    try:
        _verify(args) if args.cmd == "verify" else _convert(args)
    except BadInputError as e:
        for path, reason in e.bad:
            print(f"error: {path}: {reason}", file=sys.stderr)
        print(f"error: {len(e.bad)} bad image(s); fix or remove them, or rerun with --skip-bad "
              f"(completed records are kept and resumed)", file=sys.stderr)
        return 1
    except (sources.SourceError, UnsafePickleError, VerifyError, ValueError, FileNotFoundError) as e:
        for line in str(e).splitlines():
            print(f"error: {line}", file=sys.stderr)
        return 1
    return 0
