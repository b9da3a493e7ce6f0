"""build_loaders: the one entry point the trainers call, for every format, one or two streams."""

import glob
import json
import os
from dataclasses import dataclass

import numpy as np
import torch

from bip_dist.data.bad_samples import SampleGuard, check_images
from bip_dist.data.datasets import FolderDataset, LMDBDataset, MemoryDataset
from bip_dist.data.files import REBUILD, DataFileError
from bip_dist.data.presets import (NUM_CLASSES, BatchNormalize, batch_pad_crop_flip, pad_for, train_transform,
                                   val_transform)
from bip_dist.data.samplers import EvalOrder, TrainOrder
from bip_dist.data.seeded import SeededDataset, SeededOrder
from bip_dist.data.selection import split_train, train_labels

PATTERNS = {"lmdb": "{split}_lmdb_*.lmdb", "ffcv": "{split}_ffcv_*.beton", "memory": "{split}.npz",
            "folder": "{split}"}


def resolve_file(cfg, split):
    """The prepared file (or folder) of `split` ('train' / 'val'): the explicit key, else the single
    file in cfg.root matching the format's naming pattern; one-line error otherwise."""
    key = f"{split}_file"
    explicit = getattr(cfg, key)
    if explicit:
        if not os.path.exists(explicit):
            raise FileNotFoundError(f"data.{key} = {explicit!r} does not exist")
        return explicit
    pattern = os.path.join(cfg.root, PATTERNS[cfg.format].format(split=split))
    found = sorted(glob.glob(pattern))
    if not found:
        raise FileNotFoundError(f"data.root = {cfg.root!r}: no {pattern!r} (data.format = {cfg.format!r}); "
                                f"prepare it with `python -m data_prep` or set data.{key}")
    if len(found) > 1:
        raise FileNotFoundError(f"data.root = {cfg.root!r}: {len(found)} files match {pattern!r} "
                                f"({', '.join(map(os.path.basename, found))}); choose one with data.{key}")
    return found[0]


class _Batches:
    """Shared wrapper: turns a source of uint8 batches into normalised float batches on `device`."""

    def __init__(self, order, source, post, device, two_streams=False):
        self.order, self.source, self.post = order, source, post
        self.device, self.two = torch.device(device), two_streams

    def __len__(self):
        return len(self.order)

    def __iter__(self):
        for x, y in self.source():
            x = self.post(x.to(self.device, non_blocking=True))
            y = y.to(self.device, non_blocking=True).long()
            if self.two:
                h = x.shape[0] // 2
                yield (x[:h], y[:h]), (x[h:], y[h:])
            else:
                yield x, y


class TrainLoader(_Batches):
    """`.train`: iterable of (x, y) or ((x_theta, y_theta), (x_m, y_m)); len() = steps per epoch."""

    def set_epoch(self, epoch):
        """Pick the seeded permutations of `epoch` (call before iterating)."""
        self.order.set_epoch(epoch)

    def set_start_step(self, step):
        """Begin the next iteration at batch `step` of the epoch (exact mid-epoch resume)."""
        self.order.set_start_step(step)


@dataclass
class Loaders:
    """What build_loaders returns; `val_size` / `holdout_size` are this rank's evaluation shares.
    `holdout` (None without data.holdout) evaluates the held-out training images like `val`."""
    train: TrainLoader
    val: _Batches
    num_classes: int
    image_size: int
    train_size: int
    val_size: int
    holdout: _Batches = None
    holdout_size: int = 0


def _memory_source(ds, order, augment, size, seed, rank, pad=4):
    """In-RAM batches; augmentation seeded per (seed, rank, epoch, step), so resume replays it exactly."""
    def source():
        epoch, start = getattr(order, "epoch", 0), getattr(order, "start", 0)
        for step, idx in enumerate(order, start=start):
            idx = torch.as_tensor(idx)
            x = ds.x[idx]
            if augment:
                state = np.random.SeedSequence([seed, rank, epoch, step]).generate_state(1)[0]
                gen = torch.Generator().manual_seed(int(state))
                x = batch_pad_crop_flip(x, gen, size, pad)
            elif x.shape[-1] != size:
                x = val_transform("digits", size)(x)
            yield x, ds.y[idx]
    return source


def _torch_source(ds, order, workers, seed, rank, pin):
    """DataLoader batches; persistent workers keep LMDB handles and decoders warm across epochs."""
    gen = torch.Generator().manual_seed(seed * 1000 + rank)
    dl = torch.utils.data.DataLoader(ds, batch_sampler=order, num_workers=workers, pin_memory=pin, generator=gen,
                                     persistent_workers=workers > 0, prefetch_factor=4 if workers else None)
    return lambda: iter(dl)


def _dataset(cfg, path, transform, classes=None):
    if cfg.format == "memory":
        return MemoryDataset(path, transform)
    ds = LMDBDataset(path, transform) if cfg.format == "lmdb" else FolderDataset(path, transform, classes)
    return SampleGuard(ds, cfg.skip_bad)


def same_classes(tpath, tclasses, vpath, vclasses):
    """Refuse a val file whose class names differ from train's: its labels would mean other classes."""
    t, v = [str(c) for c in tclasses], [str(c) for c in vclasses]
    if t == v:
        return
    i = next((i for i, (a, b) in enumerate(zip(t, v)) if a != b), min(len(t), len(v)))
    raise DataFileError(f"{vpath}: its {len(v)} class names differ from the {len(t)} of {tpath} (label {i}: "
                        f"{_name(v, i)} in val, {_name(t, i)} in train); every split must use train's class "
                        f"list, {REBUILD}")


def _name(names, i):
    return repr(names[i]) if i < len(names) else "none"


def _selection(cfg, path, n, ds=None, rank=0, world_size=1, batch_size=1):
    """(training indices or None, holdout EvalOrder or None) for data.holdout / data.subset; labels are
    read only when one of them is set."""
    if not (cfg.holdout or cfg.subset):
        return None, None
    pool, hold = split_train(train_labels(cfg.format, path, ds), cfg.holdout, cfg.subset, cfg.holdout_seed,
                             path)
    horder = EvalOrder(n, batch_size, rank=rank, world_size=world_size, indices=hold) if len(hold) else None
    return pool, horder


def _ffcv_classes(path, dataset):
    side = path + ".json"  # written by data_prep next to every .beton
    if os.path.isfile(side):
        with open(side) as f:
            meta = json.load(f)
        return meta["classes"], int(meta["count"])
    raise FileNotFoundError(f"{path}: missing {side} (class list and count); rewrite it with data_prep")


def build_loaders(cfg, *, rank=0, world_size=1, seed=0, two_streams=False, device="cpu"):
    """Training and validation loaders of `cfg` (a DataConfig) for this rank.

    Train order: seeded permutations sharded across ranks (see TrainOrder); with `two_streams` each item
    is ((x_theta, y_theta), (x_m, y_m)) from two independent permutations loaded as one batch of 2b.
    Val: every sample exactly once across ranks, deterministic; so is `holdout`, the training images
    data.holdout leaves out (bip_dist/data/selection.py). Batches are float32, normalised when
    cfg.normalize, on `device`.
    """
    cfg.validate()
    size, streams = cfg.size, 2 if two_streams else 1
    vbs = cfg.val_batch_size or 2 * cfg.batch_size
    post = BatchNormalize(cfg.dataset, cfg.normalize)
    tpath, vpath = resolve_file(cfg, "train"), resolve_file(cfg, "val")
    if cfg.format == "ffcv":
        from bip_dist.data.ffcv_loader import ffcv_loader
        classes, n_train = _ffcv_classes(tpath, cfg.dataset)
        vclasses, n_val = _ffcv_classes(vpath, cfg.dataset)
        same_classes(tpath, classes, vpath, vclasses)
        pool, horder = _selection(cfg, tpath, n_train, None, rank, world_size, vbs)
        order = TrainOrder(n_train if pool is None else len(pool), cfg.batch_size, rank=rank,
                           world_size=world_size, seed=seed, streams=streams, drop_last=cfg.drop_last, indices=pool)
        vorder = EvalOrder(n_val, vbs, rank=rank, world_size=world_size)
        common = dict(dataset=cfg.dataset, size=size, augment=cfg.augment, workers=cfg.workers, device=device)
        tl = ffcv_loader(tpath, train=True, batch_size=streams * cfg.batch_size, seed=seed,
                         flat_order=order.epoch_order, n_indices=n_train, **common)

        def train_source():
            yield from tl
            order.start = 0  # a resume offset applies to one epoch only
        vl = ffcv_loader(vpath, train=False, batch_size=vbs, flat_order=lambda: vorder.idx, n_indices=n_val,
                         **common)
        tsrc, vsrc, n_val_rank = train_source, lambda: iter(vl), len(vorder.idx)
        if horder is not None:  # the held-out training images, read like val
            hl = ffcv_loader(tpath, train=False, batch_size=vbs, flat_order=lambda: horder.idx, n_indices=n_train,
                             **common)
            hsrc = lambda: iter(hl)  # noqa: E731
    else:
        tf = None if cfg.format == "memory" else train_transform(cfg.dataset, size, cfg.augment)
        vf = None if cfg.format == "memory" else val_transform(cfg.dataset, size)
        tds = _dataset(cfg, tpath, tf)
        # Folders: val is labelled by train's class list (it may lack a class); files carry their list.
        vds = _dataset(cfg, vpath, vf, tds.classes if cfg.format == "folder" else None)
        same_classes(tpath, tds.classes, vpath, vds.classes)
        if cfg.check_images and cfg.format != "memory":
            check_images([tds, vds], cfg.workers)
        classes, n_train, n_val = tds.classes, len(tds), len(vds)
        pool, horder = _selection(cfg, tpath, n_train, tds, rank, world_size, vbs)
        order = TrainOrder(n_train if pool is None else len(pool), cfg.batch_size, rank=rank,
                           world_size=world_size, seed=seed, streams=streams, drop_last=cfg.drop_last, indices=pool)
        vorder = EvalOrder(n_val, vbs, rank=rank, world_size=world_size)
        if cfg.format == "memory":
            tsrc = _memory_source(tds, order, cfg.augment, size, seed, rank, pad_for(cfg.dataset))
            vsrc = _memory_source(vds, vorder, False, size, seed, rank)
            hsrc = _memory_source(tds, horder, False, size, seed, rank)
        else:
            # Pinned pages only speed up copies to a GPU; on the CPU they would cost memory for nothing.
            pin = cfg.pin_memory and torch.device(device).type == "cuda"
            # Augmentation seeded per sample, so resume and worker count do not change it.
            tsrc = _torch_source(SeededDataset(tds), SeededOrder(order, seed), cfg.workers, seed, rank, pin)
            vsrc = _torch_source(vds, vorder, cfg.workers, seed, rank, pin)
            if horder is not None:  # the held-out training images, read with the evaluation transform
                hsrc = _torch_source(tds.with_transform(vf), horder, cfg.workers, seed, rank, pin)
        n_val_rank = len(vorder.idx)
    num_classes = len(classes) or NUM_CLASSES.get(cfg.dataset, 0)
    holdout = None if horder is None else _Batches(horder, hsrc, post, device)
    return Loaders(train=TrainLoader(order, tsrc, post, device, two_streams), val=_Batches(vorder, vsrc, post, device),
                   num_classes=num_classes, image_size=size, train_size=order.n, val_size=n_val_rank,
                   holdout=holdout, holdout_size=0 if horder is None else len(horder.idx))
