"""The BiP iteration (paper Algorithm 1), fused into the minimum two forward/backward passes.

    pass 1 (B_theta): theta <- theta - alpha * grad_theta l(m * theta)           [weights only]
    pass 2 (B_m):     g_s = grad_s l(m * theta_new) through the straight-through estimator
                      g_s <- g_s + IG;  s <- SGD(s, g_s);  m <- top-k(|s|)

The reference code (fused: false) computes pass 2 twice ("bilevel" mode for the vector of all gradients,
then "prune" mode for the score gradients) at the same point on the same batch, then runs a fourth
forward only to log accuracy. Both give the same weights, scores and masks; the fused step just drops the
repeated work (BatchNorm running statistics are the only state that moves differently: they update once
per forward pass).
"""

import torch
import torch.nn.functional as F

from bip_dist.train.steps import count_correct, set_requires_grad


class BipStep:
    two_streams = True
    trains_weights = True
    trains_scores = True
    shares_scores = True  # runs prune.score_init: shared (weights and scores one variable)

    def __init__(self, engine, model, weight_params, store, score_opt, bip_cfg):
        self.engine, self.model, self.weights = engine, model, weight_params
        self.store, self.score_opt = store, score_opt
        self.fused, self.implicit, self.lr2 = bip_cfg.fused, bip_cfg.implicit, bip_cfg.lr2
        self.ig = torch.zeros_like(store.scores) if self.implicit == "paper" else None

    def set_lrs(self, weight_lr, score_lr):
        for g in self.engine.weight_opt.param_groups:
            g["lr"] = weight_lr
        self.score_opt.lr = score_lr

    def train_mode(self):
        pass  # each pass sets what it differentiates

    def __call__(self, batch):
        (x1, y1), (x2, y2) = batch
        e, store = self.engine, self.store
        timer = e.timed()
        timer.lap()
        x1, y1 = e.to_device(x1, y1)
        x2, y2 = e.to_device(x2, y2)
        # --- pass 1: lower level on B_theta ---------------------------------------------------------
        set_requires_grad(self.weights, True)
        store.set_trainable(False)
        e.zero_theta()
        with e.autocast():
            out1 = e.forward_theta(x1)
            loss1 = F.cross_entropy(out1, y1)
        comm0 = e.comm_seconds
        e.backward_theta(loss1)
        e.step_theta()
        # Shared scores (prune.score_init: shared) are theta: they and the mask move with this step.
        flips = store.follow_weights() if store.shared else 0.0
        t_theta = timer.lap()
        # --- pass 2: upper level at the updated theta on B_m -----------------------------------------
        paper = self.implicit == "paper"
        set_requires_grad(self.weights, False)
        set_requires_grad(store.weights, paper)  # the paper IG needs grad_theta on B_m at theta_new
        store.set_trainable(True)
        if paper:
            for w in store.weights:
                w.grad = None
        store.zero_grad()
        g_other = None
        if self.fused:
            out2, loss2 = self._score_pass(x2, y2)
        else:
            out2, loss2, g_other = self._reference_passes(x2, y2)
        t_score = timer.lap()
        if paper:
            self._paper_ig()
        grad_norm, layer_norms = store.grad_norms() if e.logged_step else (None, None)  # logged steps only
        self.score_opt.step(self.implicit, self.lr2, ig=self.ig, g_other=g_other)
        if store.shared:
            e.assign_weights(store.weights, store.params)
        flips += store.refresh_mask()
        e.check_masks()
        t_mask = timer.lap()
        if not self.fused:
            with torch.no_grad(), e.autocast():  # the reference's extra forward, only to log accuracy
                out2 = e.forward_scores(x2)
        return {"loss_theta": loss1.detach(), "correct_theta": count_correct(out1, y1), "n_theta": y1.numel(),
                "loss_score": loss2.detach(), "correct_score": count_correct(out2, y2), "n_score": y2.numel(),
                "time_theta": t_theta, "time_score": t_score, "time_mask": t_mask,
                "time_comm": e.comm_seconds - comm0, "mask_flips": flips, "score_grad_norm": grad_norm,
                "layer_score_grad_norm": layer_norms}

    def _score_pass(self, x, y):
        with self.engine.autocast():
            out = self.engine.forward_scores(x)
            loss = F.cross_entropy(out, y)
        self.engine.backward_scores(loss)
        return out, loss

    def _reference_passes(self, x, y):
        """Reference: a "bilevel" pass (all gradients), then a "prune" pass (score gradients only)."""
        set_requires_grad(self.weights, True)
        self._score_pass(x, y)
        g_bilevel = self.store.grad.clone()
        set_requires_grad(self.weights, False)
        set_requires_grad(self.store.weights, self.implicit == "paper")
        for w in self.weights:
            w.grad = None
        self.store.zero_grad()
        out, loss = self._score_pass(x, y)
        return out, loss, g_bilevel

    def _paper_ig(self):
        grads = [w.grad for w in self.store.weights]
        self.engine.reduce_mean_(grads)  # the score pass ran on the unwrapped module: rank-local
        self._squares_to_ig(grads)

    def _squares_to_ig(self, grads):
        """ig = sum of (dL/dtheta)^2 over the weights of each score (the paper's Hessian-free term)."""
        for (_, m), g, a, b in zip(self.store.layers, grads, self.store.offsets[:-1], self.store.offsets[1:]):
            self.ig[a:b].copy_(g.pow(2).sum_to_size(m.scores.shape).reshape(-1))
