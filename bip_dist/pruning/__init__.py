"""Prunable layers, flat score/mask storage, top-k mask projection and sparsity reports."""

from bip_dist.pruning.layers import MaskedConv2d, MaskedLinear, make_prunable, prunable_layers
from bip_dist.pruning.store import ScoreStore
from bip_dist.pruning.report import sparsity_report

__all__ = ["MaskedConv2d", "MaskedLinear", "make_prunable", "prunable_layers", "ScoreStore",
           "sparsity_report"]
