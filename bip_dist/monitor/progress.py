"""A tqdm bar per epoch on rank 0: loss, top-1, images/s, the epoch's ETA (tqdm) and the run's ETA."""

import sys

from bip_dist.train.callbacks import Callback


def _fmt_secs(s):
    s = int(s)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class ProgressBar(Callback):
    """Postfix values come from the shared StepMeter, so they refresh every log_every steps (no sync
    per step); the bar itself advances every step."""

    def __init__(self, meter, epochs, max_steps=0, file=None):
        self.meter, self.epochs, self.max_steps = meter, epochs, max_steps
        self.file = file or sys.stderr
        self.bar, self.spe, self.total = None, 0, 0

    def on_start(self, state, parts, loaders, run_dir):
        self.spe = len(loaders.train)
        self.total = min(self.max_steps or self.spe * self.epochs, self.spe * self.epochs)
        self._open(state)

    def _open(self, state):
        from tqdm import tqdm
        done = state.step - state.epoch * self.spe  # resumed mid-epoch
        self.bar = tqdm(total=self.spe, initial=done, desc=f"epoch {state.epoch + 1}/{self.epochs}",
                        file=self.file, dynamic_ncols=True, leave=True, unit="it")

    def on_step(self, state, out):
        if self.bar is None:
            self._open(state)
        self.bar.update(1)
        if self.meter.fresh:
            m = self.meter.last
            level = "score" if "loss_score" in m else "theta"
            post = {"loss": f"{m.get('loss_' + level, 0.0):.3f}", "top1": f"{m.get('top1_' + level, 0.0):.1f}",
                    "img/s": f"{m['images_per_s']:.0f}"}
            if m.get("time_step"):  # whole-run ETA from the window's mean step time (eval excluded)
                post["eta_run"] = _fmt_secs(max(0, self.total - state.step) * m["time_step"])
            self.bar.set_postfix(post, refresh=False)

    def on_epoch_end(self, state, metrics):
        # Closed before MetricsLog prints its epoch line, so the line does not collide with the bar.
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
