"""Per-layer kept counts for `prune.scope: layerwise`: how many of each layer's scores the mask keeps.

A global top-k lets the scores decide every layer's share, which is what BiP's reference does; but scores
of different layers need not share a scale, and at 96-99 % sparsity one ranking can leave a whole layer
(the classifier, a shortcut) with no weight at all, after which the output ignores the input. A layer-wise
budget fixes each layer's count before training, and the scores then only choose *which* weights a layer
keeps. Rules:
  uniform  every layer keeps the fraction k (HYDRA's code; small layers such as the stem and the
           classifier are cut as hard as the widest convolution);
  erk      Erdős–Rényi-kernel (Evci et al., RigL, 2020): density proportional to
           sum(shape) / prod(shape), scaled so that the model keeps k of all its weights, capped at 1 with
           the excess handed to the other layers; thin layers keep more, wide ones less.
"""

import math

BUDGETS = ("uniform", "erk")


def erk_densities(shapes, k):
    """Density per weight shape such that sum(d_l * n_l) = k * sum(n_l), each d_l in (0, 1]."""
    sizes = [math.prod(s) for s in shapes]
    raw = [sum(s) / n for s, n in zip(shapes, sizes)]
    total = sum(sizes)
    dense = set()
    while True:
        # Layers already capped at 1 keep everything; the rest share what is left in proportion to `raw`.
        left = k * total - sum(sizes[i] for i in dense)
        denom = sum(raw[i] * sizes[i] for i in range(len(sizes)) if i not in dense)
        eps = left / denom if denom > 0 else 0.0
        over = {i for i in range(len(sizes)) if i not in dense and eps * raw[i] > 1.0}
        if not over:
            return [1.0 if i in dense else eps * raw[i] for i in range(len(sizes))]
        dense |= over


def layer_keep_counts(weight_shapes, score_sizes, k, rule, keep_count):
    """Kept score entries per layer under `rule`: `keep_count(n)` of each layer for uniform (the store's
    rounding), round(d_l * n_l) for erk; always at least 1 per layer."""
    if rule == "uniform":
        return [keep_count(n) for n in score_sizes]
    if rule == "erk":
        dens = erk_densities([tuple(s) for s in weight_shapes], k)
        return [min(n, max(1, int(round(d * n)))) for d, n in zip(dens, score_sizes)]
    raise ValueError(f"unknown prune.budget {rule!r}; valid: {', '.join(BUDGETS)}")
