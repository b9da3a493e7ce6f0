"""Mask rules of the classic baselines, written into a ScoreStore: scores := the ranking, then top-k.

- OMP (one-shot magnitude): rank |w| (unstructured) or the L2 norm of each filter / channel (structured).
- random: rank i.i.d. uniform scores from a seeded generator.
- IMP round: rank the magnitudes of the previous round's trained weights among the survivors of its mask.
Unstructured masks are either global (one top-k over all prunable weights: the store's own projection) or
layer-wise (top-k inside each layer). Filter / channel masks are always per layer, as in the store.
The store's scores keep the ranking afterwards, so a checkpoint shows what the mask was chosen from.
"""

import torch

from bip_dist.pruning.store import magnitude as _magnitude

# Survivors of the previous IMP round get at least this score, so a surviving weight that is exactly
# zero still ranks above every pruned one (pruned entries score 0).
_SURVIVOR_FLOOR = 1e-30


@torch.no_grad()
def magnitude(weight, score_shape):
    """The store's magnitude ranking, in float32 whatever the dtype the weights were saved in."""
    return _magnitude(weight.detach().float(), score_shape)


@torch.no_grad()
def apply_ranking(store, ranking, scope="global"):
    """Write `ranking` (a list of per-layer tensors shaped like each layer's scores) into the store's scores
    and project: global or layer-wise top-k of k = store.k. Returns the weight sparsity reached."""
    for (_, m), r in zip(store.layers, ranking):
        m.scores.copy_(r.to(m.scores.dtype).reshape(m.scores.shape))
    if scope not in ("global", "layer"):
        raise ValueError(f"unknown baseline scope {scope!r}; valid: global, layer")
    store.refresh_mask(per_layer=scope == "layer", budget=False)  # baseline.scope, not prune.scope
    return store.sparsity()


def omp_ranking(store):
    """One-shot magnitude pruning of the weights the model holds now (the loaded source net)."""
    return [magnitude(m.weight, m.scores.shape) for _, m in store.layers]


def random_ranking(store, generator):
    """Uniform random scores: every weight (filter, channel) equally likely to survive."""
    return [torch.rand(m.scores.shape, generator=generator) for _, m in store.layers]


def imp_ranking(store, state):
    """Magnitudes of `state`'s weights (a state_dict: the previous round's result or the dense model),
    with everything its masks removed ranked last, so a round only removes survivors."""
    ranking = []
    for name, m in store.layers:
        key = f"{name}.weight"
        if key not in state:
            raise ValueError(f"baseline.mask_from has no {key!r}: not a checkpoint of this model")
        r = magnitude(state[key], m.scores.shape)
        prev = state.get(f"{name}.mask")
        if prev is not None:
            if prev.numel() != m.scores.numel():
                raise ValueError(f"baseline.mask_from: {name}.mask has {prev.numel()} entries, this run's "
                                 f"masks have {m.scores.numel()} (different prune.layer_type?)")
            r = r.clamp_min(_SURVIVOR_FLOOR) * prev.reshape(m.scores.shape).to(r.dtype)
        ranking.append(r)
    return ranking


def kept_fraction(store):
    """Fraction of prunable weights kept (1 - sparsity), for checks and reports."""
    return 1.0 - store.sparsity()
