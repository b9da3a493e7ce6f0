"""Assemble model, masks, optimizers and the step object of a trainer from the config."""

from dataclasses import dataclass
from typing import Any, Optional

import torch

from bip_dist.checkpoint.handover import load_source_net, run_meta
from bip_dist.models import build_model
from bip_dist.optim import FlatScoreSGD, weight_optimizer, weight_params
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.bip_step import BipStep
from bip_dist.train.steps import HydraStep, WeightStep


@dataclass
class Parts:
    model: torch.nn.Module
    store: Optional[ScoreStore]
    weight_opt: torch.optim.Optimizer
    score_opt: Optional[FlatScoreSGD]
    step: Any
    meta: dict


def build_parts(cfg, engine, num_classes, prepare_masks=None):
    """Build everything a trainer needs; `prepare_masks(model, store)` lets baselines (OMP, random)
    set their one-shot mask after the source net is loaded."""
    torch.manual_seed(cfg.seed)
    n_cls = cfg.model.num_classes or num_classes
    model = build_model(cfg.model.arch, n_cls)
    pruned = cfg.prune.layer_type != "dense"
    if pruned:
        make_prunable(model, cfg.prune.layer_type)
    model.to(engine.device)
    if engine.channels_last:
        model.to(memory_format=torch.channels_last)
    store = ScoreStore(model, cfg.prune.k, cfg.prune.layer_type) if pruned else None
    meta = run_meta(cfg, n_cls)
    has_masks = False
    if cfg.trainer == "finetune" and not cfg.source_net:
        raise ValueError("trainer 'finetune' needs source_net (the prune stage's final.pt)")
    if cfg.source_net:
        has_masks = load_source_net(cfg.source_net, model, meta)
    if store is not None and not has_masks:
        g = torch.Generator().manual_seed(cfg.seed)
        store.init_scores(cfg.prune.score_init, generator=g)
        store.refresh_mask()
    if prepare_masks is not None:
        prepare_masks(model, store)
    wparams = weight_params(model)
    wopt = weight_optimizer(wparams, cfg.optim)
    sopt = FlatScoreSGD(store, cfg.score_optim) if store is not None else None
    engine.prepare(model, store, wopt)
    engine.broadcast_state()
    if cfg.trainer == "bip":
        step = BipStep(engine, model, wparams, store, sopt, cfg.bip)
    elif cfg.trainer == "hydra":
        step = HydraStep(engine, model, wparams, store, sopt)
    else:
        step = WeightStep(engine, model, wparams, store)
    step.train_mode()
    return Parts(model, store, wopt, sopt, step, meta)
