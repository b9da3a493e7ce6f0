"""Collapse is never silent: a layer whose mask keeps no weight, or validation top-1 at chance.

A global top-k can hand one layer's whole budget to the others (the classifier, a shortcut, the stem);
the output then no longer depends on the input and accuracy falls to chance while the loss looks merely
high. This callback checks the per-layer kept counts at every logging step and epoch end, and validation
top-1 after each evaluation. It reports each collapsed layer once, and chance accuracy once, in one line
naming the step (stderr and log.txt, rank 0). With `prune.on_collapse: stop` every rank raises at the same
step: the masks and the evaluated metrics are identical on every rank, so every rank takes the same
decision without a collective.
"""

import sys
from pathlib import Path

import torch

from bip_dist import exit_codes
from bip_dist.train.callbacks import Callback
from bip_dist.train.guards import RunStopped

CHANCE_FACTOR = 1.2  # top-1 below 1.2x chance (12 % with 10 classes) counts as collapsed


class Collapsed(RunStopped):
    exit_code = exit_codes.BAD_INPUT


class CollapseWatch(Callback):
    def __init__(self, every, action, is_main, rank=0):
        self.every, self.action, self.is_main, self.rank = every, action, is_main, rank
        self.store, self.log_path, self.chance = None, None, None
        self.reported, self.at_chance = set(), False

    def on_start(self, state, parts, loaders, run_dir):
        self.store = parts.store
        self.chance = 100.0 / max(1, int(parts.meta.get("num_classes") or loaders.num_classes))
        self.log_path = Path(run_dir) / "log.txt"

    def on_step(self, state, out):
        if self.store is not None and state.step % self.every == 0:
            self._check_layers(state.step)

    def on_epoch_end(self, state, metrics):
        if self.store is not None:
            self._check_layers(state.step)
        top1 = metrics.get("val_top1")
        if top1 is not None and top1 < CHANCE_FACTOR * self.chance and not self.at_chance:
            self.at_chance = True
            self._say(f"step {state.step}: validation top-1 {top1:.2f} % is at chance "
                      f"({self.chance:.2f} % for {round(100 / self.chance)} classes)")

    @torch.no_grad()
    def _check_layers(self, step):
        kept = self.store.layer_stats()["kept"].tolist()  # one sync
        dead = [name for (name, _), n in zip(self.store.layers, kept) if n == 0 and name not in self.reported]
        if dead:
            self.reported.update(dead)
            self._say(f"step {step}: {len(dead)} layer(s) keep no weight: {', '.join(dead)}")

    def _say(self, what):
        stops = self.action == "stop"
        line = (f"collapse: {what}; " + ("stopping (prune.on_collapse: stop)" if stops else
                                         "the run goes on (prune.on_collapse: warn)"))
        if self.is_main:
            print(f"[warning] {line}", file=sys.stderr, flush=True)
            if self.log_path is not None and self.log_path.parent.is_dir():
                with open(self.log_path, "a") as f:
                    f.write(line + "\n")
        if stops:
            raise Collapsed(line, self.rank)
