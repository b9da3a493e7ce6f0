"""Run monitoring on rank 0: step statistics, TensorBoard scalars and a progress bar.

`monitors_for(cfg, engine)` is what `bip_dist.train.loop.callbacks_for` hands the training loop. The
loop's own MetricsLog (metrics.jsonl, log.txt) runs after these, so it records what they add to each step
(images_per_s, peak_mem_mb) and to the epoch metrics (epoch_seconds, train_images_per_s, peak_mem_mb).
"""

from bip_dist.monitor.meter import StepMeter, peak_memory_mb
from bip_dist.monitor.progress import ProgressBar
from bip_dist.monitor.tensorboard import TensorBoardLog, global_sparsity, layer_sparsity


def monitors_for(cfg, engine):
    """Callbacks for one run: [StepMeter, ProgressBar?, TensorBoardLog?] on rank 0, [] elsewhere.

    Other ranks log nothing: their losses are those of their own shard and their step times match
    rank 0's up to noise, so one writer keeps the files small and free of races.
    """
    if not engine.is_main:
        return []
    meter = StepMeter(cfg.train.log_every, engine.device, engine.world_size)
    cbs = [meter]
    if cfg.train.progress:
        cbs.append(ProgressBar(meter, cfg.train.epochs, cfg.train.max_steps))
    if cfg.log.tensorboard:
        cbs.append(TensorBoardLog(meter, cfg.log.per_layer))
    return cbs


__all__ = ["monitors_for", "StepMeter", "ProgressBar", "TensorBoardLog", "peak_memory_mb",
           "global_sparsity", "layer_sparsity"]
