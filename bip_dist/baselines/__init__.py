"""Classic pruning baselines run by the same loop, loaders, engines and checkpoints as BiP.

Trainers `omp`, `random` and `imp` are weight-training runs (WeightStep) whose mask is set once, before
step 0, by their registry entry's `one_shot_mask(cfg)` (omp_masks / random_masks / imp_masks here): after
build_parts has loaded `source_net` (the pretrained dense model, or for IMP the rewinding point), it ranks
and projects to k = prune.k. IMP's rounds (20% of the survivors each) are driven from outside
(launcher/imp.py, bip-sweep): round r is one run with prune.k = 0.8^r, baseline.mask_from = round r-1's
final.pt and source_net = the rewind weights.
"""

import torch

from bip_dist.baselines.masks import apply_ranking, imp_ranking, omp_ranking, random_ranking
from bip_dist.baselines.rewind import RewindSaver, imp_schedule, parse_point


def omp_masks(cfg):
    """One-shot magnitude pruning of the weights loaded from source_net."""
    return lambda model, store: apply_ranking(store, omp_ranking(store), cfg.baseline.scope)


def random_masks(cfg):
    """Random pruning from a generator seeded by `cfg.seed`."""
    def prepare(model, store):
        apply_ranking(store, random_ranking(store, torch.Generator().manual_seed(cfg.seed)), cfg.baseline.scope)
    return prepare


def imp_masks(cfg):
    """One IMP round: rank the previous round's trained weights (baseline.mask_from) among its survivors."""
    if not (cfg.source_net or cfg.baseline.mask_from):
        raise ValueError("trainer 'imp' needs source_net (rewind weights) and/or baseline.mask_from")

    def prepare(model, store):
        if cfg.baseline.mask_from:
            from bip_dist.checkpoint.io import load_checkpoint
            obj = load_checkpoint(cfg.baseline.mask_from)
            ranking = imp_ranking(store, obj["model"] if "model" in obj else obj)
        else:  # round 1 with nothing else given: rank the weights we start from
            ranking = omp_ranking(store)
        apply_ranking(store, ranking, cfg.baseline.scope)
    return prepare


__all__ = ["omp_masks", "random_masks", "imp_masks", "RewindSaver", "imp_schedule", "parse_point",
           "apply_ranking", "omp_ranking", "random_ranking", "imp_ranking"]
