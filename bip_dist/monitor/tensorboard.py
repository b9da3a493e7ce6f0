"""TensorBoard scalars of a run (rank 0), written to <run_dir>/tb/.

Tags (the step-dict ones from bip_dist.train.metrics.TAGS):
  train/{loss,top1}_{theta,score}     window means of both BiP levels (theta: lower, score: upper)
  lr/{theta,score}                    learning rates
  mask/flip_rate, score/grad_norm     BiP's convergence signals (flip rate: window mean; gradient norm: at
                                      the logging step)
  time/{data,theta,score,comm,mask,step}  step-time breakdown in seconds (window means)
  perf/images_per_s, perf/peak_mem_mb throughput (global) and peak memory (CUDA allocator or max RSS)
  sparsity/global                     fraction of prunable weights masked out (log steps, epoch ends)
  sparsity/layer/<name>               per-layer sparsity at epoch ends (cfg.log.per_layer)
  layer_kept/<name>, layer_score_norm/<name>, layer_score_grad_norm/<name>
                                      per-layer kept fraction, score L2 norm and score-gradient L2 norm at
                                      logging steps of masked runs (cfg.log.per_layer): collapse warnings
  val/{top1,top5,loss}                validation after evaluated epochs
  holdout/{top1,top5,loss}            the held-out training images (data.holdout), beside val
Scalars are converted to floats only every log_every steps (StepMeter), never per step.
"""

from pathlib import Path

import torch

from bip_dist.train.callbacks import Callback
from bip_dist.train.metrics import TAGS


@torch.no_grad()
def layer_sparsity(store):
    """{layer name: fraction of its weights masked out}. Within a layer every score entry covers the
    same number of weights, so the mask's mean is the weight sparsity for all granularities."""
    means = torch.stack([m.mask.float().mean() for _, m in store.layers]).tolist()  # one sync
    return {name: 1.0 - v for (name, _), v in zip(store.layers, means)}


@torch.no_grad()
def global_sparsity(store):
    """Fraction of all prunable weights masked out, computed with one device sync."""
    kept = sum(m.mask.float().sum() * (m.weight.numel() / m.mask.numel()) for _, m in store.layers)
    total = sum(m.weight.numel() for _, m in store.layers)
    return 1.0 - float(kept) / total


class TensorBoardLog(Callback):
    """Writes the tags above with torch.utils.tensorboard.SummaryWriter; reads window means from `meter`."""

    def __init__(self, meter, per_layer=True):
        self.meter, self.per_layer = meter, per_layer
        self.writer, self.store = None, None

    def on_start(self, state, parts, loaders, run_dir):
        from torch.utils.tensorboard import SummaryWriter  # imported late: tensorboard is heavy
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
        self.store = parts.store
        if self.store is not None:
            self.writer.add_scalar("sparsity/global", global_sparsity(self.store), state.step)

    def on_step(self, state, out):
        if not self.meter.fresh:
            return
        step = state.step
        for key, tag in TAGS.items():
            if key in self.meter.last:
                self.writer.add_scalar(tag, self.meter.last[key], step)
        if self.store is not None:
            self.writer.add_scalar("sparsity/global", global_sparsity(self.store), step)
            if self.per_layer:
                self._layer_curves(step, out.get("layer_score_grad_norm"))

    @torch.no_grad()
    def _layer_curves(self, step, grad_norms):
        """Per-layer kept fraction, score norm and score-gradient norm: a layer heading for collapse shows
        its kept fraction falling while another layer's score norm runs away."""
        stats = self.store.layer_stats()
        sizes = self.store.layer_sizes()
        kept, norms = stats["kept"].tolist(), stats["score_norm"].tolist()
        grads = grad_norms.tolist() if grad_norms is not None else None
        for i, (name, _) in enumerate(self.store.layers):
            self.writer.add_scalar(f"layer_kept/{name}", kept[i] / sizes[i], step)
            self.writer.add_scalar(f"layer_score_norm/{name}", norms[i], step)
            if grads is not None:
                self.writer.add_scalar(f"layer_score_grad_norm/{name}", grads[i], step)

    def on_epoch_end(self, state, metrics):
        step = state.step
        for split in ("val", "holdout"):
            for key in ("top1", "top5", "loss"):
                if f"{split}_{key}" in metrics:
                    self.writer.add_scalar(f"{split}/{key}", metrics[f"{split}_{key}"], step)
        if "train_images_per_s" in metrics:
            self.writer.add_scalar("perf/epoch_images_per_s", metrics["train_images_per_s"], step)
        if self.store is not None:
            self.writer.add_scalar("sparsity/global", global_sparsity(self.store), step)
            if self.per_layer:
                for name, v in layer_sparsity(self.store).items():
                    self.writer.add_scalar(f"sparsity/layer/{name}", v, step)
        self.writer.flush()

    def close(self):
        if self.writer is not None:
            self.writer.close()
