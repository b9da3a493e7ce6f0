"""Per-iteration learning-rate schedules (cosine, step, constant) with linear warm-up.

A schedule is a pure function of the global step, so resuming needs no scheduler state.
"""

import bisect
import math


class LrSchedule:
    def __init__(self, cfg, base_lr, steps_per_epoch, epochs):
        self.kind = cfg.schedule
        self.base = base_lr
        self.total = max(1, steps_per_epoch * epochs)
        self.warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        self.milestones = sorted(int(round(f * self.total)) for f in cfg.milestones)
        self.gamma = cfg.gamma

    def __call__(self, step):
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.base
        if self.kind == "step":
            return self.base * self.gamma ** bisect.bisect_right(self.milestones, step)
        t = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * self.base * (1.0 + math.cos(math.pi * min(1.0, t)))
