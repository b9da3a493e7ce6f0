"""Step statistics gathered without a device sync per step, and peak memory of the process/device.

Step dicts hold tensors (losses, correct counts, score-gradient norm, mask flip rate) next to plain
floats (times, rates). Calling float() on a CUDA tensor waits for the GPU, so the meter only *adds*
tensors on the device each step and converts the window's sums once every `every` steps.
"""

import resource
import sys
import time

import torch

from bip_dist.train.callbacks import Callback
from bip_dist.train.metrics import LEVELS, WINDOW_MEANS, images, top1


def peak_memory_mb(device):
    """CUDA: torch.cuda.max_memory_allocated (an allocator counter, no sync). CPU: the process's
    maximum resident set size (what the OS had to give us, including Python and data)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # macOS reports bytes, Linux KiB


def _add(acc, key, value):
    if torch.is_tensor(value):
        value = value.detach()
        acc[key] = value.to(torch.float64) if key not in acc else acc[key] + value
    else:
        acc[key] = acc.get(key, 0.0) + float(value)


class StepMeter(Callback):
    """Rank-0 observer shared by the TensorBoard and progress callbacks (it must run before them).

    Each step it adds `images_per_s` (global: per-rank samples through forward/backward passes per
    second x world size) to the step dict, so MetricsLog's metrics.jsonl records it too. Every `every`
    steps `last` holds window means as floats (loss, top-1 in %, times, rates) plus `peak_mem_mb`, and
    `fresh` is True for that step; a step part the engine did not time (None: on CUDA only logging steps
    are timed) is left out of its mean. At epoch ends it adds epoch time, throughput and peak memory to the
    epoch metrics (so they reach metrics.jsonl, log.txt and result.json).
    """

    def __init__(self, every, device, world_size=1):
        self.every, self.device, self.world = every, device, world_size
        self.last, self.fresh = {}, False
        self._acc, self._count = {}, {}
        self._epoch_t0, self._epoch_imgs, self._epoch_busy = time.perf_counter(), 0, 0.0

    def on_start(self, state, parts, loaders, run_dir):
        self._epoch_t0 = time.perf_counter()
        if torch.device(self.device).type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def on_step(self, state, out):
        n = images(out)
        out["images_per_s"] = self.world * n / max(out.get("time_step", 0.0), 1e-9)
        self._epoch_imgs += n
        self._epoch_busy += out.get("time_step", 0.0)
        for k in WINDOW_MEANS:
            if out.get(k) is not None:  # step parts are None where the engine did not time them
                _add(self._acc, k, out[k])
                self._count[k] = self._count.get(k, 0) + 1
        for level in LEVELS:
            if f"correct_{level}" in out:
                _add(self._acc, f"correct_{level}", out[f"correct_{level}"])
                _add(self._acc, f"n_{level}", out[f"n_{level}"])
        _add(self._acc, "images", n)
        self.fresh = state.step % self.every == 0
        if self.fresh:
            self.last = self._flush()
            out["peak_mem_mb"] = self.last["peak_mem_mb"]

    def _flush(self):
        acc = {k: float(v) for k, v in self._acc.items()}  # the one sync per window
        res = {k: acc[k] / self._count[k] for k in WINDOW_MEANS if k in acc}
        for level in LEVELS:
            if f"n_{level}" in acc:
                res[f"top1_{level}"] = top1(acc[f"correct_{level}"], acc[f"n_{level}"])
        res["images_per_s"] = self.world * acc["images"] / max(acc.get("time_step", 0.0), 1e-9)
        res["peak_mem_mb"] = peak_memory_mb(self.device)
        self._acc, self._count = {}, {}
        return res

    def on_epoch_end(self, state, metrics):
        secs = time.perf_counter() - self._epoch_t0
        if self._epoch_imgs:
            metrics["epoch_seconds"] = secs
            metrics["train_images_per_s"] = self.world * self._epoch_imgs / max(self._epoch_busy, 1e-9)
        metrics["peak_mem_mb"] = peak_memory_mb(self.device)
        self._epoch_t0, self._epoch_imgs, self._epoch_busy = time.perf_counter(), 0, 0.0
