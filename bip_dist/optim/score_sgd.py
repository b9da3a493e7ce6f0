"""Fused upper-level update on the flat score buffer.

One call applies, over every score of the model at once:
    reference IG:  g <- g - lr2 * g * g                        (OPTML-Group/BiP, trainer/bilevel.py)
                   one rounding (addcmul); with `reference_order` the reference's two: g + ((-lr2 * g) * g)
    paper IG:      g <- g - lr2 * sum_to_score((dL/dtheta)^2)  (bi-linear, Hessian-free implicit gradient)
    per layer (score_optim.normalize: layer):  g_l <- g_l * ||s_l|| / ||g_l||
    weight decay:  g <- g + wd * s
    momentum:      b <- mu * b + g          (torch.optim.SGD semantics, dampening 0)
    step:          s <- s - lr * b          (or Nesterov: s <- s - lr * (g + mu * b))
as a few in-place ops on contiguous tensors instead of a Python loop over layers. The SGD part is torch's
fused SGD kernel (one pass over scores, gradient and momentum instead of four), which gives the same bits as
torch.optim.SGD's unfused update.
"""

import torch
from torch.optim.sgd import sgd


class FlatScoreSGD:
    def __init__(self, store, cfg, reference_order=False):
        self.store = store
        self.reference_order = reference_order
        self._ig = None
        self.lr = cfg.lr
        self.momentum = cfg.momentum
        self.weight_decay = cfg.weight_decay
        self.normalize = getattr(cfg, "normalize", "none")
        if self.normalize == "auto":  # shared scores are the weights: the reference's plain step
            self.normalize = "none" if store.shared else "layer"
        self.nesterov = cfg.nesterov and cfg.momentum > 0
        self.buf = torch.zeros_like(store.scores) if cfg.momentum > 0 else None

    @torch.no_grad()
    def step(self, implicit="none", lr2=0.0, ig=None, g_other=None):
        """Update scores from `store.grad` (already reduced across ranks). `ig` is the flat sum of
        squared theta-gradients, needed by the paper formula; `g_other` is the reference code's second
        copy of the score gradient (its "bilevel" pass), equal to `g` whenever both are computed."""
        g, s = self.store.grad, self.store.scores
        if implicit == "reference" and lr2:
            other = g if g_other is None else g_other
            if self.reference_order:  # a 1-ulp difference here grows into 1,000s of mask flips in 20 steps
                if self._ig is None:  # a kept buffer: allocating 4 bytes per score each step costs more
                    self._ig = torch.empty_like(g)
                g.add_(torch.mul(g, -lr2, out=self._ig).mul_(other))
            else:
                g.addcmul_(g, other, value=-lr2)
        elif implicit == "paper" and lr2:
            g.add_(ig, alpha=-lr2)
        if self.normalize == "layer":
            self._normalize_per_layer()
        sgd([s], [g], [self.buf], fused=True, weight_decay=self.weight_decay, momentum=self.momentum,
            lr=self.lr, dampening=0.0, nesterov=self.nesterov, maximize=False)

    def _normalize_per_layer(self):
        """g_l <- g_l * ||s_l|| / ||g_l|| per layer (score_optim.normalize: layer): each step moves a
        layer's scores by lr relative to their own size, whatever the scale of its gradient, so no layer's
        scores can outgrow the others' and take a global top-k's whole budget."""
        grads, scores = self.store.grad_views(), self.store.score_views()
        g_norm = torch.stack(torch._foreach_norm(grads, 2))
        s_norm = torch.stack(torch._foreach_norm(scores, 2))
        factor = s_norm / g_norm.clamp_min(1e-12)
        torch._foreach_mul_(grads, list(factor.unbind()))

    def state_dict(self):
        return {"momentum_buffer": self.buf, "lr": self.lr}

    def load_state_dict(self, state):
        if self.buf is not None and state.get("momentum_buffer") is not None:
            self.buf.copy_(state["momentum_buffer"])
        self.lr = state.get("lr", self.lr)
