"""How many scores cross zero during a pruning stage: sign changes of the flat score buffer, per step.

    python bench/score_sign_changes.py --source runs/demo/pretrain/<hash>/final.pt \
        [--config configs/digits/bip.yaml] [--set key=value ...] [--out sign_changes.json]

Runs the stage in one process with a callback that compares sign(s) after every iteration with the
step before. Prints and writes: changes per step, their total, how many distinct scores changed sign at
least once, how many are negative at the end, and the stage's final top-1. Without --source the dense
stage (configs/digits/pretrain.yaml) runs first. Counting needs the store, so it is a callback of the
ordinary training loop: the stage runs exactly as bip-train runs it.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from bip_dist.config import load_config
from bip_dist.engine import LocalEngine
from bip_dist.train.callbacks import Callback
from bip_dist.train.loop import train


class SignChanges(Callback):
    """Per step: the number of entries whose sign (-1, 0, +1) differs from the previous step's."""

    def on_start(self, state, parts, loaders):
        self.store = parts.store
        self.prev = self.store.scores.sign()
        self.ever = torch.zeros_like(self.prev, dtype=torch.bool)
        self.per_step = []

    def on_step(self, state, out):
        now = self.store.scores.sign()
        changed = now != self.prev
        self.per_step.append(int(changed.sum()))
        self.ever |= changed
        self.prev = now

    def summary(self):
        return {"steps": len(self.per_step), "sign_changes_total": sum(self.per_step),
                "scores_that_changed_sign": int(self.ever.sum()),
                "negative_at_end": int((self.store.scores < 0).sum()), "scores": self.store.numel,
                "steps_with_changes": sum(1 for c in self.per_step if c), "per_step": self.per_step}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/digits/bip.yaml")
    p.add_argument("--source", default=None, help="dense checkpoint to prune (default: run the pretrain stage)")
    p.add_argument("--out-dir", default="runs/sign_changes")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", default=None, help="JSON file for the counts")
    args = p.parse_args(argv)
    common = [f"out_dir={args.out_dir}", "train.progress=false", "log.tensorboard=false"]
    source = args.source
    if source is None:
        pre = train(load_config("configs/digits/pretrain.yaml", common), LocalEngine())
        source = str(Path(pre["run_dir"]) / "final.pt")
    counter = SignChanges()
    cfg = load_config(args.config, common + [f"source_net={source}", *args.set])
    res = train(cfg, LocalEngine(), callbacks=[counter])
    out = {"config": args.config, "overrides": args.set, "source": source, "val_top1": res.get("val_top1"),
           **counter.summary()}
    print(json.dumps({k: v for k, v in out.items() if k != "per_step"}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
