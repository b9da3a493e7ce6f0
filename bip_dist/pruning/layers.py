"""Conv2d / Linear with a score tensor and a binary mask, trained through a straight-through estimator.

The mask is a buffer computed once per optimisation step (by `ScoreStore.refresh_mask`), never inside
forward: the reference code re-sorted every score in every forward pass, which dominated its step time.
Scores have one entry per weight (unstructured), per output filter (filter) or per input channel (channel).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


class _MaskedWeight(torch.autograd.Function):
    """w_eff = w * m, m = TopK(|s|). Backward: dL/dw = g * m; dL/ds = sign(s) * sum_to_score_shape(g * w).

    The straight-through estimator passes the mask's gradient to |s| unchanged; the chain rule through
    |s| then multiplies by sign(s). Without it a negative score would move away from zero under a descent
    step, growing |s| where the loss asks to shrink it (and the reference, which differentiates through
    `scores.abs()`, keeps the factor). sign(0) = 0, as autograd's abs gives.
    """

    @staticmethod
    def forward(ctx, weight, scores, mask):
        ctx.save_for_backward(weight, scores, mask)
        return weight * mask

    @staticmethod
    def backward(ctx, g):
        weight, scores, mask = ctx.saved_tensors
        gw = g * mask if ctx.needs_input_grad[0] else None
        gs = None
        if ctx.needs_input_grad[1]:
            gs = (g * weight).sum_to_size(scores.shape).mul_(scores.sign())
        return gw, gs, None


def score_shape(weight, granularity):
    if granularity == "unstructured":
        return weight.shape
    if granularity == "filter":
        return (weight.shape[0],) + (1,) * (weight.dim() - 1)
    if granularity == "channel":
        return (1, weight.shape[1]) + (1,) * (weight.dim() - 2)
    raise ValueError(f"unknown granularity {granularity!r}; valid: unstructured, filter, channel")


class PrunableMixin:
    """Adds `scores` (Parameter) and `mask` (buffer) to a Conv2d / Linear."""

    def _init_prunable(self, granularity):
        self.granularity = granularity
        shape = score_shape(self.weight, granularity)
        self.scores = nn.Parameter(torch.zeros(shape, dtype=self.weight.dtype, device=self.weight.device))
        self.register_buffer("mask", torch.ones(shape, dtype=self.weight.dtype, device=self.weight.device))

    def masked_weight(self):
        if self.scores.requires_grad or self.weight.requires_grad:
            return _MaskedWeight.apply(self.weight, self.scores, self.mask)
        return self.weight * self.mask


class MaskedConv2d(PrunableMixin, nn.Conv2d):
    def forward(self, x):
        return self._conv_forward(x, self.masked_weight(), self.bias)


class MaskedLinear(PrunableMixin, nn.Linear):
    def forward(self, x):
        return F.linear(x, self.masked_weight(), self.bias)


def _convert(module, granularity):
    if isinstance(module, nn.Conv2d) and not isinstance(module, MaskedConv2d):
        new = MaskedConv2d(module.in_channels, module.out_channels, module.kernel_size, module.stride,
                           module.padding, module.dilation, module.groups, module.bias is not None,
                           module.padding_mode, device=module.weight.device, dtype=module.weight.dtype)
    elif isinstance(module, nn.Linear) and not isinstance(module, MaskedLinear):
        new = MaskedLinear(module.in_features, module.out_features, module.bias is not None,
                           device=module.weight.device, dtype=module.weight.dtype)
    else:
        return None
    # Keep the very same Parameter objects so optimizers and source weights stay attached.
    new.weight = module.weight
    if module.bias is not None:
        new.bias = module.bias
    new._init_prunable(granularity)
    return new


def make_prunable(model, granularity):
    """Replace every Conv2d / Linear of `model` in place by its masked twin; returns `model`.

    State-dict keys stay `<name>.weight` / `<name>.bias`, with `<name>.scores` and `<name>.mask` added,
    so a dense checkpoint loads into the prunable model with `strict=False`.
    """
    for name, child in list(model.named_children()):
        new = _convert(child, granularity)
        if new is not None:
            setattr(model, name, new)
        else:
            make_prunable(child, granularity)
    return model


def prunable_layers(model):
    """(name, layer) for every masked layer, in module order (the order of the flat buffers)."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, PrunableMixin)]
