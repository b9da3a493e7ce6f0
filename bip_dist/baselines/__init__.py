"""Classic pruning baselines run by the same loop, loaders, engines and checkpoints as BiP.

Trainers `omp`, `random` and `imp` are weight-training runs (WeightStep) whose mask is set once, before
step 0, by `mask_preparer(cfg)`: after build_parts has loaded `source_net` (the pretrained dense model, or
for IMP the rewinding point), it ranks and projects to k = prune.k. IMP's rounds (20% of the survivors
each) are driven from outside (launcher/imp.py, bip-sweep): round r is one run with prune.k = 0.8^r,
baseline.mask_from = round r-1's final.pt and source_net = the rewind weights.
"""

import torch

from bip_dist.baselines.masks import apply_ranking, imp_ranking, omp_ranking, random_ranking
from bip_dist.baselines.rewind import RewindSaver, imp_schedule, parse_point


def mask_preparer(cfg):
    """fn(model, store) that sets the one-shot mask of trainer omp / random / imp; None for others."""
    trainer, scope = cfg.trainer, cfg.baseline.scope
    if trainer not in ("omp", "random", "imp"):
        return None
    if trainer == "omp" and not cfg.source_net:
        raise ValueError("trainer 'omp' needs source_net (the pretrained dense model to prune)")
    if trainer == "imp" and not (cfg.source_net or cfg.baseline.mask_from):
        raise ValueError("trainer 'imp' needs source_net (rewind weights) and/or baseline.mask_from")

    def prepare(model, store):
        if trainer == "omp":
            ranking = omp_ranking(store)
        elif trainer == "random":
            ranking = random_ranking(store, torch.Generator().manual_seed(cfg.seed))
        elif cfg.baseline.mask_from:
            from bip_dist.checkpoint.io import load_checkpoint
            obj = load_checkpoint(cfg.baseline.mask_from)
            ranking = imp_ranking(store, obj["model"] if "model" in obj else obj)
        else:  # round 1 with nothing else given: rank the weights we start from
            ranking = omp_ranking(store)
        apply_ranking(store, ranking, scope)

    return prepare


__all__ = ["mask_preparer", "RewindSaver", "imp_schedule", "parse_point", "apply_ranking", "omp_ranking",
           "random_ranking", "imp_ranking"]
