"""All scores, score gradients and masks of a model in three flat buffers.

Each layer's `scores` parameter, its `.grad` and its `mask` buffer are views into one flat tensor each, so
- the score optimizer updates every score with a handful of fused tensor ops (no loop over layers),
- the global top-k runs on one tensor without concatenating,
- distributed code can all-reduce contiguous slices of the gradient as buckets fill during backward,
- mask flips and mask hashes are one comparison / one reduction.
Build the store after the model has been moved to its device (moving replaces parameter storage).
"""

import math

import torch

from bip_dist.pruning.budget import layer_keep_counts
from bip_dist.pruning.layers import prunable_layers
from bip_dist.pruning.topk import BandedTopK, reference_topk_mask_, topk_mask_

_BANDED_MIN = 1 << 20  # below this, plain topk is already cheap on the CPU


def magnitude(weight, score_shape):
    """|w| per weight, or the L2 norm over each filter / channel when the scores are structured."""
    w = weight.detach()
    return w.abs() if tuple(score_shape) == tuple(w.shape) else w.pow(2).sum_to_size(score_shape).sqrt()


class ScoreStore:
    """Flat score / grad / mask storage and the top-k projection for one model."""

    def __init__(self, model, k, granularity, kept_count="round", scope="global", budget="erk"):
        self.layers = prunable_layers(model)
        if not self.layers:
            raise ValueError("model has no prunable layers; call make_prunable first")
        self.k = float(k)
        self.granularity = granularity
        if kept_count not in ("round", "reference"):
            raise ValueError(f"unknown kept_count {kept_count!r}; valid: round, reference")
        self.kept_count = kept_count
        # The reference code's selection down to its ties (and, read by make_step, its IG rounding).
        self.reference_order = kept_count == "reference"
        self.shared = False  # prune.score_init: shared (see share_weights)
        ref = self.layers[0][1].scores
        sizes = [m.scores.numel() for _, m in self.layers]
        self.numel = sum(sizes)
        self.offsets = [0]
        for s in sizes:
            self.offsets.append(self.offsets[-1] + s)
        self.scores = torch.zeros(self.numel, dtype=ref.dtype, device=ref.device)
        self.grad = torch.zeros_like(self.scores)
        self.mask = torch.ones_like(self.scores)
        for (_, m), a, b in zip(self.layers, self.offsets[:-1], self.offsets[1:]):
            shape = m.scores.shape
            self.scores[a:b].copy_(m.scores.detach().reshape(-1))
            self.mask[a:b].copy_(m.mask.reshape(-1))
            m.scores.data = self.scores[a:b].view(shape)
            # AccumulateGrad adds into an existing .grad in place, so backward writes the flat buffer.
            m.scores.grad = self.grad[a:b].view(shape)
            m._buffers["mask"] = self.mask[a:b].view(shape)
        # The CPU selection keeps its last threshold between refreshes.
        self._banded = BandedTopK(last_ties=self.reference_order)
        self.params = [m.scores for _, m in self.layers]
        self.weights = [m.weight for _, m in self.layers]
        if scope not in ("global", "layerwise"):
            raise ValueError(f"unknown prune.scope {scope!r}; valid: global, layerwise")
        # prune.scope: layerwise fixes every layer's kept count up front (pruning/budget.py); structured
        # masks are always per layer, with k of each layer's filters / channels.
        self.layer_keep = None
        if scope == "layerwise" and granularity == "unstructured":
            self.layer_keep = layer_keep_counts([w.shape for w in self.weights], sizes, self.k, budget,
                                                self.keep_count)

    # --- gradients -------------------------------------------------------------------------------
    def zero_grad(self):
        self.grad.zero_()
        for p, (_, m), a, b in zip(self.params, self.layers, self.offsets[:-1], self.offsets[1:]):
            if p.grad is None or p.grad.data_ptr() != self.grad[a:b].data_ptr():
                p.grad = self.grad[a:b].view(p.shape)

    def set_trainable(self, flag):
        for p in self.params:
            p.requires_grad_(flag)

    # --- mask ------------------------------------------------------------------------------------
    def keep_count(self, n):
        """Entries kept out of n: round(k*n) (at least 1), or the reference code's n - int((1-k)*n)."""
        if self.kept_count == "reference":
            return n - int((1.0 - self.k) * n)
        return max(1, int(round(self.k * n)))

    @torch.no_grad()
    def refresh_mask(self, per_layer=False, budget=True):
        """Project scores onto the k-sparse set: m = top-k(|s|), one global selection for unstructured
        scores (so layers get learned ratios), one per layer for structured ones or with `per_layer` (k of
        each layer), or with prune.scope: layerwise each layer's own budgeted count (unless not `budget`).
        Returns the fraction of entries that flipped, BiP's own convergence signal, as a 0-dim float64
        tensor on the scores' device: a GPU step never waits for it (loggers convert it at log time)."""
        layer_keep = self.layer_keep if budget and not per_layer else None
        if self.granularity == "unstructured" and not per_layer and layer_keep is None:
            spans = [(0, self.numel)]
        else:
            spans = list(zip(self.offsets[:-1], self.offsets[1:]))
        if len(spans) == 1 and self.scores.device.type == "cpu" and self.numel >= _BANDED_MIN:
            flips = self._banded(self.scores, self.mask, self.keep_count(self.numel))
            if flips is not None:
                return flips.double() / self.numel
        keeps = layer_keep if layer_keep is not None else [None] * len(spans)
        mag = self.scores.abs()
        flips = sum(self._select(mag[a:b], self.mask[a:b], keep) for (a, b), keep in zip(spans, keeps))
        return flips.double() / self.numel

    def _select(self, mag, mask, keep=None):
        """mask <- top-`keep` (default keep_count(n)) of `mag`; returns the number of flipped entries
        (0-dim tensor)."""
        n = mag.numel()
        keep = self.keep_count(n) if keep is None else keep
        if keep >= n:
            flips = n - torch.count_nonzero(mask)
            mask.fill_(1)
            return flips
        return (reference_topk_mask_ if self.reference_order else topk_mask_)(mag, mask, keep)

    def mask_hash(self):
        """Cheap fingerprint to compare masks across ranks."""
        w = torch.arange(1, self.numel + 1, device=self.mask.device, dtype=torch.float64)
        return float((self.mask.double() * torch.sin(w)).sum())

    # --- init ------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_scores(self, method, generator=None):
        """magnitude: s = sqrt(6/fan_in) * |w| / max|w| per layer (reduced over the filter / channel for
        structured scores): HYDRA's scaled init, on |w|. abs: s = |w|, one scale for every layer (the
        reference's shared start, with scores that then move on their own). kaiming: uniform(-b, b), b = sqrt(6/fan_in).
        shared: s = w, and scores follow the weights from now on (share_weights)."""
        if method == "shared":
            self.share_weights()
            return
        for (_, m) in self.layers:
            w = m.weight.detach()
            fan_in = w[0].numel()
            bound = math.sqrt(6.0 / fan_in)
            if method == "magnitude":
                mag = magnitude(w, m.scores.shape)
                m.scores.copy_(bound * mag / mag.max().clamp_min(1e-12))
            elif method == "abs":
                m.scores.copy_(magnitude(w, m.scores.shape))
            elif method == "kaiming":
                m.scores.copy_(torch.empty_like(m.scores).uniform_(-bound, bound, generator=generator))
            else:
                raise ValueError(f"unknown score_init {method!r}; valid: magnitude, abs, kaiming, shared")

    # --- shared scores ---------------------------------------------------------------------------
    # The reference code runs `popup_scores.data = weight.data`: one tensor that both optimizers step.
    # Here scores and weights stay two tensors holding the same values wherever either is read: the
    # steps copy weights -> scores right after the theta step and scores -> weights right after the
    # score step (engine.assign_weights, which also reaches DeepSpeed's fp32 master copy). Each
    # optimizer's momentum and weight decay therefore act on the one shared value, as in the reference.
    def share_weights(self):
        """Make scores and weights one variable: s = w now, and the steps keep them equal."""
        if self.granularity != "unstructured":
            raise ValueError(f"shared scores need unstructured masks (got {self.granularity!r})")
        self.shared = True
        self.follow_weights()

    @torch.no_grad()
    def follow_weights(self):
        """s <- w for every prunable layer (after the theta step), then m <- top-k(|s|), as the
        reference's next forward computes it. Returns the fraction of mask entries that flipped."""
        torch._foreach_copy_(self.params, self.weights)
        return self.refresh_mask()

    # --- per-layer diagnostics -------------------------------------------------------------------
    def grad_views(self):
        return [self.grad[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def score_views(self):
        return [self.scores[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    @torch.no_grad()
    def grad_norms(self):
        """(global L2 norm of the score gradient, per-layer norms as one tensor), on the device."""
        per_layer = torch.stack(torch._foreach_norm(self.grad_views(), 2))
        return per_layer.norm(), per_layer

    @torch.no_grad()
    def layer_stats(self):
        """{'kept': kept count per layer, 'score_norm': L2 norm of each layer's scores}: float64 tensors
        read with one device sync by the caller (score entries cover the same number of weights within a
        layer, so the kept fraction of scores is that of weights)."""
        kept = torch.stack([m.sum() for m in (self.mask[a:b] for a, b in zip(self.offsets[:-1],
                                                                               self.offsets[1:]))])
        norms = torch.stack(torch._foreach_norm(self.score_views(), 2))
        return {"kept": kept.double(), "score_norm": norms.double()}

    def layer_sizes(self):
        return [b - a for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    # --- accounting ------------------------------------------------------------------------------
    def weight_mask(self, layer):
        """The mask broadcast to the weight's shape."""
        return layer.mask.expand_as(layer.weight)

    def sparsity(self):
        """Fraction of prunable weights that are masked out."""
        total = kept = 0
        for _, m in self.layers:
            wm = self.weight_mask(m)
            total += wm.numel()
            kept += int(wm.sum().item())
        return 1.0 - kept / total
