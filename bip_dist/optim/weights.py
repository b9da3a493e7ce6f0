"""The lower-level (theta) optimizer: SGD over weights, biases and BatchNorm affine parameters only."""

import torch


def weight_params(model):
    """Every parameter except pruning scores."""
    return [p for n, p in model.named_parameters() if not n.endswith("scores")]


def weight_optimizer(params, cfg):
    """torch SGD (foreach kernels) with the configured momentum, weight decay and Nesterov."""
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           nesterov=cfg.nesterov and cfg.momentum > 0, foreach=True)
