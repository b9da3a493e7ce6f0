"""Per-trainer extras the loop hangs off: observers (monitoring) and one-shot mask preparation (baselines)."""


def callbacks_for(cfg, engine):
    """Observers for a run: the IMP rewind-point saver (baseline.save_rewind), then progress and
    TensorBoard on rank 0 (bip_dist.monitor)."""
    cbs = []
    if cfg.baseline.save_rewind:
        from bip_dist.baselines import RewindSaver
        cbs.append(RewindSaver(cfg.baseline.save_rewind, engine.is_main))
    try:
        from bip_dist.monitor import monitors_for
    except ImportError:
        return cbs
    return cbs + monitors_for(cfg, engine)


def mask_preparer(cfg):
    """A function (model, store) -> None that sets the mask of one-shot baselines before training, or None."""
    if cfg.trainer in ("omp", "imp", "random"):
        from bip_dist.baselines import mask_preparer as baseline_preparer
        return baseline_preparer(cfg)
    return None
