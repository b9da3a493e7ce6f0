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
        rec, line = stop_record(state, getattr(exc, "kind", "error"), f"{type(exc).__name__}: {exc}")
        self.jsonl.write(rec)
        self.log.write(line)

    def close(self):
        self.jsonl.close()
        self.log.close()


def stop_record(state, kind, error):
    """The metrics.jsonl record and the log.txt line of a run that stops at `state` (each with its newline)."""
    rec = {"kind": kind, "step": state.step, "epoch": state.epoch, "time": time.time(), "error": error}
    return json.dumps(rec) + "\n", f"step={state.step} epoch={state.epoch} stopped by {error}\n"


def record_hang(run_dir, state, line):
    """The hang watchdog's line in the run's metrics.jsonl and log.txt, from every rank it stops, as
    MetricsLog records every other stop (called on the watchdog's thread just before the process exits;
    appends, so it interleaves whole lines with rank 0's open MetricsLog)."""
    rec, text = stop_record(state, "error", f"PeerLost: {line}")
    for name, content in (("metrics.jsonl", rec), ("log.txt", text)):
        with open(run_dir / name, "a") as f:
            f.write(content)
