"""Assemble model, masks, optimizers and the step object of a trainer from the config."""

from dataclasses import dataclass
from typing import Any, Optional

import torch

from bip_dist.checkpoint.handover import load_source_net, run_meta
from bip_dist.models import build_model
from bip_dist.optim import FlatScoreSGD
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.registry import make_step, trainer_spec


@dataclass
class Parts:
    model: torch.nn.Module
    store: Optional[ScoreStore]
    step: Any
    meta: dict

    @property
    def score_opt(self) -> Optional[FlatScoreSGD]:
        return self.step.score_opt


def build_parts(cfg, engine, num_classes):
    """Build everything the trainer of `cfg` needs; the baselines' one-shot mask (registry) is set after
    the source net is loaded."""
    spec = trainer_spec(cfg.trainer)
    torch.manual_seed(cfg.seed)
    n_cls = cfg.model.num_classes or num_classes
    model = build_model(cfg.model.arch, n_cls)
    pruned = cfg.prune.layer_type != "dense"
    if pruned:
        make_prunable(model, cfg.prune.layer_type)
    model.to(engine.device)
    if engine.channels_last:
        model.to(memory_format=torch.channels_last)
    store = ScoreStore(model, cfg.prune.k, cfg.prune.layer_type, cfg.prune.kept_count, cfg.prune.resolved_scope,
                       cfg.prune.budget) if pruned else None
    meta = run_meta(cfg, n_cls)
    has_masks = False
    if spec.source and not cfg.source_net:
        raise ValueError(f"trainer '{cfg.trainer}' needs source_net ({spec.source})")
    prepare_masks = spec.one_shot_mask(cfg) if spec.one_shot_mask else None
    if cfg.source_net:
        has_masks = load_source_net(cfg.source_net, model, meta)
    if store is not None and not has_masks:
        g = torch.Generator().manual_seed(cfg.seed)
        store.init_scores(cfg.prune.score_init, generator=g)
        store.refresh_mask()
    if prepare_masks is not None:
        prepare_masks(model, store)
    step = make_step(cfg.trainer, engine, model, store, cfg.optim, cfg.score_optim, cfg.bip)
    return Parts(model, store, step, meta)
