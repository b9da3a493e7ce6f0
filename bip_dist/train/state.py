"""TrainState: the loop's counters, the part of a run's progress that checkpoints store."""

import dataclasses
from dataclasses import dataclass


@dataclass
class TrainState:
    step: int = 0          # iterations done
    epoch: int = 0         # epochs done
    best_top1: float = -1.0  # best validation top-1 so far (-1: none yet)

    def as_dict(self):
        """{'step', 'epoch', 'best_top1'}: the checkpoint's `state` entry."""
        return dataclasses.asdict(self)

    def load(self, saved):
        """Take the counters from a checkpoint's `state` entry (keys it lacks keep their value)."""
        for f in dataclasses.fields(self):
            if f.name in saved:
                setattr(self, f.name, saved[f.name])
