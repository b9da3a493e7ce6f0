"""Optimizers and learning-rate schedules of both levels."""

from bip_dist.optim.schedule import LrSchedule
from bip_dist.optim.score_sgd import FlatScoreSGD
from bip_dist.optim.weights import weight_optimizer, weight_params

__all__ = ["LrSchedule", "FlatScoreSGD", "weight_optimizer", "weight_params"]
