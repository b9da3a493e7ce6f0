"""First-order BiP (experimental): both levels from one forward and one backward, a dense step's cost.

One backward at (theta_t, m_t) on one batch gives G = dL/dw for the effective weight w = m * theta, and
from it (pruning/layers.py, _MaskedWeight) both levels' gradients:
    lower level:  dL/dtheta = G * m
    upper level:  dL/ds = sign(s) * sum_to_score_shape(G * theta)     (straight-through estimator)
    theta <- SGD(theta, dL/dtheta);  s <- SGD(s, dL/ds + IG);  m <- top-k(|s|)   (both from the same point)
Against exact BiP (bip_step.py) it drops exactly two things: the look-ahead (the score gradient is taken
at theta_t, not at the updated theta_t - alpha * dL/dtheta) and the independence of the two batches (one
batch serves both levels). The implicit-gradient term, both optimizers and the one top-k projection per
step are BiP's; the paper IG squares the dL/dtheta of this same backward.
"""

import torch.nn.functional as F

from bip_dist.train.bip_step import BipStep
from bip_dist.train.steps import count_correct, set_requires_grad


class FirstOrderBipStep(BipStep):
    """BiP's optimizers, IG and learning rates (inherited); one pass where BiP takes two."""

    trains_scores = True
    two_streams = False
    trains_weights = True
    # Shared scores would need an order for the two updates of the one variable, which both start from
    # the same point here; undefined, so refused (config/load.py) rather than silently unshared.
    shares_scores = False

    def train_mode(self):
        set_requires_grad(self.weights, True)
        self.store.set_trainable(True)

    def __call__(self, batch):
        e, store = self.engine, self.store
        timer = e.timed()
        timer.lap()
        comm0 = e.comm_seconds
        paper = self.implicit == "paper"
        x, y = e.to_device(*batch)
        out, loss = self.gradients(x, y, keep_weight_grads=paper)
        if paper:
            # Already averaged across ranks by the weight reduction; read before the theta step.
            self._squares_to_ig([w.grad for w in store.weights])
        e.step_theta()
        t_pass = timer.lap()
        grad_norm, layer_norms = store.grad_norms() if e.logged_step else (None, None)  # logged steps only
        self.score_opt.step(self.implicit, self.lr2, ig=self.ig)
        flips = store.refresh_mask()
        e.check_masks()
        t_mask = timer.lap()
        loss, correct, n = loss.detach(), count_correct(out, y), y.numel()
        # BiP's keys, both levels reporting the one shared batch; `n_images` counts it once for throughput.
        # The score level has no pass of its own (its share of the pass is in time_theta): 0 s where the
        # step is timed, None (untimed) where the other parts are too.
        return {"loss_theta": loss, "correct_theta": correct, "n_theta": n,
                "loss_score": loss, "correct_score": correct, "n_score": n, "n_images": n,
                "time_theta": t_pass, "time_score": None if t_pass is None else 0.0, "time_mask": t_mask,
                "time_comm": e.comm_seconds - comm0, "mask_flips": flips, "score_grad_norm": grad_norm,
                "layer_score_grad_norm": layer_norms}

    def gradients(self, x, y, keep_weight_grads=False):
        """The step's one forward and backward on a device batch, without the updates; returns (logits,
        loss). On return `store.grad` holds dL/ds and the weights' `.grad` dL/dtheta, both averaged over
        ranks (DeepSpeed's ZeRO frees the latter, so it refuses `keep_weight_grads`)."""
        e = self.engine
        self.train_mode()
        e.zero_theta()
        self.store.zero_grad()
        with e.autocast():
            out = e.forward_both(x)
            loss = F.cross_entropy(out, y)
        e.backward_both(loss, keep_weight_grads=keep_weight_grads)
        return out, loss
