"""One optimisation iteration per trainer, each returning its losses, accuracies and time parts as a dict.

- WeightStep: dense pretraining and finetuning with a fixed mask (weights only).
- HydraStep: HYDRA, scores only with frozen weights, mask refreshed after every score update.
- BipStep: BiP's theta-step on B_theta then the score step at the updated theta on B_m (bip_step.py).
Every step class takes the same arguments (engine, model, weight params, store, score optimizer, bip
config section), so bip_dist.train.registry.make_step builds any of them. Rates come in through `set_lrs`;
the loop owns the schedule.
"""

import torch.nn.functional as F


def set_requires_grad(params, flag):
    for p in params:
        p.requires_grad_(flag)


def count_correct(logits, y):
    return (logits.detach().argmax(1) == y).sum()


class WeightStep:
    """Lower-level only: SGD on weights through the engine (masks, if any, stay fixed)."""

    two_streams = False
    trains_weights = True
    trains_scores = False

    def __init__(self, engine, model, weight_params, store=None, score_opt=None, bip_cfg=None):
        self.engine, self.model, self.weights, self.store = engine, model, weight_params, store
        # Never stepped (masks stay fixed); held so checkpoints of every masked run carry score_opt.
        self.score_opt = score_opt

    def set_lrs(self, weight_lr, score_lr=None):
        for g in self.engine.weight_opt.param_groups:
            g["lr"] = weight_lr

    def train_mode(self):
        set_requires_grad(self.weights, True)
        if self.store is not None:
            self.store.set_trainable(False)

    def __call__(self, batch):
        e = self.engine
        timer = e.timed()
        timer.lap()
        x, y = e.to_device(*batch)
        e.zero_theta()
        with e.autocast():
            out = e.forward_theta(x)
            loss = F.cross_entropy(out, y)
        e.backward_theta(loss)
        e.step_theta()
        t = timer.lap()
        return {"loss_theta": loss.detach(), "correct_theta": count_correct(out, y), "n_theta": y.numel(),
                "time_theta": t}


class HydraStep:
    """Upper-level only: scores trained with weights frozen; one pass per iteration."""

    two_streams = False
    trains_weights = False
    trains_scores = True
    shares_scores = True  # runs prune.score_init: shared (weights and scores one variable)

    def __init__(self, engine, model, weight_params, store, score_opt, bip_cfg=None):
        self.engine, self.model, self.weights = engine, model, weight_params
        self.store, self.score_opt = store, score_opt

    def set_lrs(self, weight_lr, score_lr):
        self.score_opt.lr = score_lr

    def train_mode(self):
        set_requires_grad(self.weights, False)
        self.store.set_trainable(True)

    def __call__(self, batch):
        e, store = self.engine, self.store
        timer = e.timed()
        timer.lap()
        x, y = e.to_device(*batch)
        store.zero_grad()
        with e.autocast():
            out = e.forward_scores(x)
            loss = F.cross_entropy(out, y)
        comm0 = e.comm_seconds
        e.backward_scores(loss)
        t_score = timer.lap()
        grad_norm, layer_norms = store.grad_norms() if e.logged_step else (None, None)  # logged steps only
        self.score_opt.step()
        if store.shared:  # prune.score_init: shared: the weights are the scores
            e.assign_weights(store.weights, store.params)
        flips = store.refresh_mask()
        e.check_masks()
        t_mask = timer.lap()
        return {"loss_score": loss.detach(), "correct_score": count_correct(out, y), "n_score": y.numel(),
                "time_score": t_score, "time_comm": e.comm_seconds - comm0, "time_mask": t_mask,
                "mask_flips": flips, "score_grad_norm": grad_norm,
                "layer_score_grad_norm": layer_norms}
