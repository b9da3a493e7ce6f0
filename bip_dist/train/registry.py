"""Every trainer by name, and `make_step`, the one way to build a trainer's step object.

A trainer is one entry of TRAINERS: its step class, the pipeline stage (`mode`) it belongs to, whether it
runs with masks, what `source_net` it needs, and the one-shot mask rule of the classic baselines. The
config loader, the loop, the benchmarks and the tests read this table; nothing else compares trainer names.
"""

from dataclasses import dataclass
from typing import Callable, Optional

from bip_dist.baselines import imp_masks, omp_masks, random_masks
from bip_dist.optim import FlatScoreSGD, weight_optimizer, weight_params
from bip_dist.train.bip_step import BipStep
from bip_dist.train.first_order_step import FirstOrderBipStep
from bip_dist.train.steps import HydraStep, WeightStep


@dataclass(frozen=True)
class TrainerSpec:
    step: type                       # the per-iteration step class (train/steps.py, bip_step.py, ...)
    mode: str                        # the stage of pretrain -> prune -> finetune it runs as
    prunes: bool                     # runs with masks: needs prune.layer_type other than 'dense'
    source: str = ""                 # what its source_net must be; '' = it needs none
    one_shot_mask: Optional[Callable] = None  # cfg -> fn(model, store) setting the mask before step 0

    @property
    def two_streams(self):
        """Whether each iteration takes two batches (B_theta, B_m) from two loader streams."""
        return self.step.two_streams

    @property
    def trains_scores(self):
        """Whether each iteration learns the mask (updates the scores)."""
        return self.step.trains_scores

    @property
    def trains_weights(self):
        """Whether each iteration updates the weights (and so all-reduces weight gradients)."""
        return self.step.trains_weights


TRAINERS = {
    "dense": TrainerSpec(WeightStep, "pretrain", prunes=False),
    "hydra": TrainerSpec(HydraStep, "prune", prunes=True),
    "bip": TrainerSpec(BipStep, "prune", prunes=True),
    "bip_first_order": TrainerSpec(FirstOrderBipStep, "prune", prunes=True),
    "finetune": TrainerSpec(WeightStep, "finetune", prunes=True, source="the prune stage's final.pt"),
    "omp": TrainerSpec(WeightStep, "prune", prunes=True, source="the pretrained dense model to prune",
                       one_shot_mask=omp_masks),
    "imp": TrainerSpec(WeightStep, "prune", prunes=True, one_shot_mask=imp_masks),
    "random": TrainerSpec(WeightStep, "prune", prunes=True, one_shot_mask=random_masks),
}


def trainer_spec(name):
    """The spec of trainer `name`; a ValueError naming the valid ones otherwise."""
    if name not in TRAINERS:
        raise ValueError(f"trainer {name!r} is not a known trainer; valid: {', '.join(TRAINERS)}")
    return TRAINERS[name]


def make_step(trainer, engine, model, store, optim, score_optim, bip):
    """The step of `trainer` over `model` (and its ScoreStore, or None): builds both optimizers from the
    `optim` / `score_optim` config sections, hands model and weight optimizer to `engine`, makes every
    rank start from rank 0's state, and sets which parameters train."""
    spec = trainer_spec(trainer)
    weights = weight_params(model)
    weight_opt = weight_optimizer(weights, optim)
    score_opt = FlatScoreSGD(store, score_optim, store.reference_order) if store is not None else None
    engine.prepare(model, store, weight_opt)
    engine.broadcast_state()
    step = spec.step(engine, model, weights, store, score_opt, bip)
    step.train_mode()
    return step
