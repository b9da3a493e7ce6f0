"""In-memory loaders with the interface of bip_dist.data.build_loaders, and a tiny model,
so end-to-end runs of `train()` take seconds and need no dataset on disk."""

import functools
import os
import sys
from types import SimpleNamespace

from bip_dist.models.registry import MODELS

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tiny_fixtures import CLASSES, TinyNet, make_data  # noqa: E402


class FakeTrain:
    def __init__(self, batches, bs, two_streams, seed=0):
        self.batches, self.bs, self.two, self.seed = batches, bs, two_streams, seed
        self.epoch, self.start = 0, 0

    def set_epoch(self, e):
        self.epoch = e

    def set_start_step(self, s):
        self.start = s

    def __len__(self):
        return self.batches

    def __iter__(self):
        x, y = make_data(self.batches * self.bs * 2, self.seed + 1000 * self.epoch)
        for i in range(self.start, self.batches):
            a, b = slice(i * self.bs, (i + 1) * self.bs), slice((self.batches + i) * self.bs,
                                                                   (self.batches + i + 1) * self.bs)
            yield ((x[a], y[a]), (x[b], y[b])) if self.two else (x[a], y[a])


def fake_build_loaders(batches=6, bs=16):
    """A replacement for bip_dist.data.build_loaders with the same signature."""
    def build(data_cfg, rank=0, world_size=1, seed=0, two_streams=False, device="cpu"):
        vx, vy = make_data(64, 99)
        val = [(vx[i:i + 32], vy[i:i + 32]) for i in range(0, 64, 32)]
        return SimpleNamespace(train=FakeTrain(batches, bs, two_streams, seed), val=val, num_classes=CLASSES)
    return build


def fake_train(monkeypatch, batches=6, bs=16):
    """train() on in-memory loaders, with `tinynet` registered for this test only (a global registration
    would add it to the registry-wide model tests)."""
    from bip_dist.train.loop import train
    monkeypatch.setitem(MODELS, "tinynet", TinyNet)
    return functools.partial(train, make_loaders=fake_build_loaders(batches, bs))


def use_fakes(monkeypatch, batches=6, bs=16):
    """As fake_train, for runs started elsewhere (the sweep's launcher): patches the loop's loaders."""
    import bip_dist.train.loop as loop
    monkeypatch.setitem(MODELS, "tinynet", TinyNet)
    monkeypatch.setattr(loop, "build_loaders", fake_build_loaders(batches, bs))
    return loop


def run_cfg(tmp_path, *overrides):
    """A validated config for a tiny run in tmp_path."""
    from bip_dist.config import load_config
    base = [f"out_dir={tmp_path}", "model.arch=tinynet", "train.epochs=2", "train.log_every=2",
            "train.progress=false"]
    return load_config(None, base + list(overrides))
