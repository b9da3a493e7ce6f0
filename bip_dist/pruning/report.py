"""Per-layer and global sparsity of prunable weights."""

import torch
import torch.nn as nn


def sparsity_report(model_or_state, from_zeros=False):
    """Per-layer and global sparsity.

    With a model holding masks, counts masked-out weights; with `from_zeros=True` (or a plain state_dict)
    counts exact zeros of every conv / linear weight, which is what an exported model really has.
    """
    layers = {}
    if isinstance(model_or_state, nn.Module) and not from_zeros:
        from bip_dist.pruning.layers import prunable_layers
        for name, m in prunable_layers(model_or_state):
            wm = m.mask.expand_as(m.weight)
            layers[name] = (int(wm.numel()), int(wm.numel() - wm.sum().item()))
    else:
        state = model_or_state.state_dict() if isinstance(model_or_state, nn.Module) else model_or_state
        for key, t in state.items():
            if key.endswith(".weight") and torch.is_tensor(t) and t.dim() in (2, 4):
                layers[key[:-len(".weight")]] = (t.numel(), int((t == 0).sum().item()))
    total = sum(n for n, _ in layers.values())
    zeros = sum(z for _, z in layers.values())
    return {
        "global_sparsity": zeros / total if total else 0.0,
        "total_weights": total,
        "zero_weights": zeros,
        "layers": {k: {"numel": n, "sparsity": z / n} for k, (n, z) in layers.items()},
    }
