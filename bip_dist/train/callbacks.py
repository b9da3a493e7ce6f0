"""Loop observers with one signature: on_step(state, out) / on_epoch_end(state, metrics) / close()."""

import json
import sys
import time


def scalarize(out):
    """Turn a step's dict (tensors, counts, seconds) into plain floats: losses and top-1 in percent."""
    res = {}
    for level in ("theta", "score"):
        if f"loss_{level}" in out:
            res[f"loss_{level}"] = float(out[f"loss_{level}"])
            res[f"top1_{level}"] = 100.0 * float(out[f"correct_{level}"]) / max(1, out[f"n_{level}"])
    for k, v in out.items():
        if k.startswith("time_") or k in ("mask_flips", "lr_theta", "lr_score", "images_per_s",
                                          "score_grad_norm", "sparsity", "peak_mem_mb"):
            res[k] = float(v)
    return res


class Callback:
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
        if state["step"] % self.every == 0:
            rec = {"kind": "train", "step": state["step"], "epoch": state["epoch"], **scalarize(out)}
            self.jsonl.write(json.dumps(rec) + "\n")

    def on_epoch_end(self, state, metrics):
        rec = {"kind": "epoch", "step": state["step"], "epoch": state["epoch"], "time": time.time(), **metrics}
        self.jsonl.write(json.dumps(rec) + "\n")
        line = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
                        if k not in ("kind", "time"))
        self.log.write(line + "\n")
        print(f"[epoch {state['epoch']}] {line}", file=sys.stderr, flush=True)

    def on_error(self, state, exc):
        rec = {"kind": "error", "step": state["step"], "epoch": state["epoch"], "time": time.time(),
               "error": f"{type(exc).__name__}: {exc}"}
        self.jsonl.write(json.dumps(rec) + "\n")
        self.log.write(f"step={state['step']} epoch={state['epoch']} stopped by {rec['error']}\n")

    def close(self):
        self.jsonl.close()
        self.log.close()
