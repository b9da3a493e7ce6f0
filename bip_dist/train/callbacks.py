"""Loop observers with one signature: every hook gets the TrainState first.

The loop calls, in order: on_start(state, parts, loaders, run_dir) once after any resume, on_step(state,
out) after each iteration (out: the step dict, see train/metrics.py), on_epoch_end(state, metrics),
on_error(state, exc) if the run stops on an exception, and close() always.
"""

import json
import sys
import time

from bip_dist.train.metrics import scalarize


class Callback:
    def on_start(self, state, parts, loaders, run_dir):
        pass

    def on_step(self, state, out):
        pass

    def on_epoch_end(self, state, metrics):
        pass

    def on_error(self, state, exc):
        pass

    def close(self):
        pass


class MetricsLog(Callback):
    """JSON-lines metrics (every `every` steps and every epoch) and a plain-text log beside it."""

    def __init__(self, run_dir, every):
        self.every = every
        self.jsonl = open(run_dir / "metrics.jsonl", "a", buffering=1)
        self.log = open(run_dir / "log.txt", "a", buffering=1)

    def on_step(self, state, out):
        if state.step % self.every == 0:
            rec = {"kind": "train", "step": state.step, "epoch": state.epoch, **scalarize(out)}
            self.jsonl.write(json.dumps(rec) + "\n")

    def on_epoch_end(self, state, metrics):
        rec = {"kind": "epoch", "step": state.step, "epoch": state.epoch, "time": time.time(), **metrics}
        self.jsonl.write(json.dumps(rec) + "\n")
        line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
                        if k not in ("kind", "time"))
        self.log.write(line + "\n")
        print(f"[epoch {state.epoch}] {line}", file=sys.stderr, flush=True)

    def on_error(self, state, exc):
        # A deliberate stop (train/guards.py) says which it was: "error" (diverged) or "preempted".
        rec = {"kind": getattr(exc, "kind", "error"), "step": state.step, "epoch": state.epoch,
               "time": time.time(), "error": f"{type(exc).__name__}: {exc}"}
        self.jsonl.write(json.dumps(rec) + "\n")
        self.log.write(f"step={state.step} epoch={state.epoch} stopped by {rec['error']}\n")

    def close(self):
        self.jsonl.close()
        self.log.close()
