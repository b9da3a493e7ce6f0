"""Compact export of filter- / channel-pruned models: a physically smaller dense network that computes the
same outputs as the masked one (eval mode), with parameter, MAC and latency comparisons.

    compact = compact_model(masked_model, input_size=(3, 32, 32))

See arch.py for what can shrink in residual networks (internal block widths only) and slicing.py for
how filter-pruned channels, which are constants after BatchNorm, are folded away exactly.
"""

import copy

import torch
import torch.nn as nn

from bip_dist.compact.arch import compact_plain
from bip_dist.compact.measure import compare_latency, count_macs, count_params
from bip_dist.compact.slicing import BiasMapConv, InputSelect
from bip_dist.pruning.layers import MaskedConv2d, MaskedLinear


def unmask(model):
    """A copy of `model` with every masked layer replaced by a plain Conv2d / Linear holding w * m."""
    model = copy.deepcopy(model)

    def swap(parent):
        for name, child in list(parent.named_children()):
            if isinstance(child, (MaskedConv2d, MaskedLinear)):
                if isinstance(child, MaskedConv2d):
                    new = nn.Conv2d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                    child.padding, child.dilation, child.groups, child.bias is not None,
                                    child.padding_mode)
                else:
                    new = nn.Linear(child.in_features, child.out_features, child.bias is not None)
                new = new.to(child.weight.device, child.weight.dtype)
                with torch.no_grad():
                    new.weight.copy_(child.weight * child.mask.expand_as(child.weight))
                    if child.bias is not None:
                        new.bias.copy_(child.bias)
                setattr(parent, name, new)
            else:
                swap(child)

    swap(model)
    return model


def compact_model(model, input_size=(3, 32, 32)):
    """Compact copy of a masked (or plain, zero-filter) model in eval mode. `input_size` (C, H, W) fixes
    the resolution only when a filter-pruned channel had to be folded into a convolution (BiasMapConv)."""
    if any(getattr(m, "granularity", "") == "unstructured" for m in model.modules()):
        raise ValueError("compact export needs filter- or channel-pruned masks (prune.layer_type filter / "
                         "channel); unstructured sparsity leaves no whole channel to remove")
    return compact_plain(unmask(model).eval(), input_size)


def compare(masked, compact, input_size=(3, 32, 32)):
    """Parameter and MAC counts of both models (MACs of the masked model as executed, and counting only
    its non-zero weights)."""
    return {"params_masked": count_params(masked), "params_compact": count_params(compact),
            "macs_masked": count_macs(masked, input_size),
            "macs_masked_nonzero": count_macs(masked, input_size, nonzero=True),
            "macs_compact": count_macs(compact, input_size)}


__all__ = ["compact_model", "unmask", "compare", "compare_latency", "count_macs", "count_params",
           "BiasMapConv", "InputSelect"]
