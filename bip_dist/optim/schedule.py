"""Learning-rate schedules with linear warm-up: per iteration (cosine, step, constant) or per epoch
(step_epoch, cosine_epoch_reference).

A schedule is a pure function of the global step, so resuming needs no scheduler state. The per-epoch
kinds hold one rate through each epoch, as the reference code (OPTML-Group/BiP utils/schedules.py) sets
its rates once at the start of every epoch.
"""

import bisect
import math


class LrSchedule:
    def __init__(self, cfg, base_lr, steps_per_epoch, epochs):
        self.kind = cfg.schedule
        self.base = base_lr
        self.spe = max(1, steps_per_epoch)
        self.epochs = epochs
        self.total = max(1, steps_per_epoch * epochs)
        self.warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
        self.milestones = sorted(int(round(f * self.total)) for f in cfg.milestones)
        # step_epoch: the first epoch e with e >= f * epochs, the reference's `epoch >= 0.5 * epochs`.
        self.epoch_milestones = sorted(math.ceil(f * epochs) for f in cfg.milestones)
        self.gamma = cfg.gamma

    def __call__(self, step):
        if step < self.warmup:
            return self.base * (step + 1) / self.warmup
        if self.kind == "constant":
            return self.base
        if self.kind == "step":
            return self.base * self.gamma ** bisect.bisect_right(self.milestones, step)
        epoch = (step - self.warmup) // self.spe
        if self.kind == "step_epoch":
            return self.base * self.gamma ** bisect.bisect_right(self.epoch_milestones, epoch)
        if self.kind == "cosine_epoch_reference":
            # (epoch - 1), as the reference writes it: epoch 0 runs just below the peak, the last epoch
            # well above 0.
            return 0.5 * self.base * (1.0 + math.cos(math.pi * (epoch - 1) / self.epochs))
        t = (step - self.warmup) / max(1, self.total - self.warmup)
        return 0.5 * self.base * (1.0 + math.cos(math.pi * min(1.0, t)))
