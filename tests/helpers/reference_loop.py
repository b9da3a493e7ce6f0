"""An independent re-implementation of the reference code's BiP and HYDRA iterations, for the fidelity tests.

Written from OPTML-Group/BiP (commit c51fc35: models/layers.py, models/resnet_cifar.py, utils/model.py,
utils/schedules.py, trainer/bilevel.py, trainer/base.py), not from bip-dist:
- every Conv2d / Linear holds `weight` and `popup_scores` as two Parameters over ONE storage
  (`initialize_scaled_score`: popup_scores.data = weight.data);
- every forward recomputes the global mask: all |s| concatenated (in module order) and sorted, the
  int((1-k)*n) smallest set to 0, the rest to 1 (of entries tied at the threshold the last are kept), with
  the gradient passed straight through to |s| (so autograd applies sign(s));
- two torch.optim.SGD optimizers. Unlike the reference, each holds only its own variables (weights,
  biases and BatchNorm / the scores): the reference's cross-coverage is not reproduced by bip-dist
  (docs/fidelity.md), so it is left out here too.
"""

import copy
import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class GetSubnetUnstructured(torch.autograd.Function):
    @staticmethod
    def forward(ctx, scores, k):
        out = scores.clone()
        # The reference runs on CUDA, where sorting more than 4,096 entries is cub's radix sort: stable.
        # sort() on the CPU is not (ties come out in any order), hence stable=True to reproduce it here.
        _, idx = scores.flatten().sort(stable=True)
        j = int((1 - k) * scores.numel())
        flat_out = out.flatten()
        flat_out[idx[:j]] = 0
        flat_out[idx[j:]] = 1
        return out

    @staticmethod
    def backward(ctx, g):
        return g, None


class _SubnetConv(nn.Conv2d):
    def forward(self, x):
        return F.conv2d(x, self.w, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _SubnetLinear(nn.Linear):
    def forward(self, x):
        return F.linear(x, self.w, self.bias)


class ReferenceNet(nn.Module):
    """A copy of a dense model whose Conv2d / Linear layers are the reference's subnet layers."""

    def __init__(self, dense, k):
        super().__init__()
        self.net, self.k = copy.deepcopy(dense), k
        self.subnets = []
        for m in self.net.modules():
            if type(m) in (nn.Conv2d, nn.Linear):
                m.__class__ = _SubnetConv if isinstance(m, nn.Conv2d) else _SubnetLinear
                m.popup_scores = nn.Parameter(torch.empty_like(m.weight))
                m.popup_scores.data = m.weight.data  # initialize_scaled_score
                self.subnets.append(m)

    def adj(self):
        scores = torch.cat([m.popup_scores.view(-1) for m in self.subnets])
        return GetSubnetUnstructured.apply(scores.abs(), self.k)

    def forward(self, x):
        adj, pointer = self.adj(), 0
        for m in self.subnets:
            n = m.weight.numel()
            m.w = m.weight * adj[pointer:pointer + n].view_as(m.weight)
            pointer += n
        return self.net(x)

    def scores(self):
        return [m.popup_scores for m in self.subnets]

    def others(self):
        """Every parameter except the scores: the weight optimizer's variables."""
        ids = {id(s) for s in self.scores()}
        return [p for p in self.parameters() if id(p) not in ids]

    def switch(self, mode):
        """switch_to_finetune / _bilevel / _prune: BatchNorm is never frozen (freeze_vars skips it)."""
        for m in self.net.modules():
            if isinstance(m, nn.BatchNorm2d):
                continue
            for name in ("weight", "bias"):
                p = getattr(m, name, None)
                if p is not None:
                    p.requires_grad_(mode != "prune")
            if hasattr(m, "popup_scores"):
                m.popup_scores.requires_grad_(mode != "finetune")


def optimizers(net, weight_cfg, score_cfg):
    """(weight optimizer, mask optimizer): torch SGD, each over its own variables."""
    def sgd(params, c):
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)
    return sgd(net.others(), weight_cfg), sgd(net.scores(), score_cfg)


def cosine_lr(lr, epoch, epochs):
    """cosine_schedule (warm-up 0)."""
    return lr * 0.5 * (1 + math.cos((epoch - 1) / epochs * math.pi))


def step_lr(lr, epoch, epochs):
    """step_schedule, which `mask_lr_schedule: step` selects, called with the weight lr."""
    a = lr
    if epoch >= 0.5 * epochs:
        a = lr * 0.1
    if epoch >= 0.75 * epochs:
        a = lr * 0.01
    return a


def set_lr(opt, lr):
    for g in opt.param_groups:
        g["lr"] = lr


def bip_iteration(net, opt, mask_opt, batch, lr2):
    """trainer/bilevel.py, one iteration (accelerate off): four forward passes."""
    (x_theta, y_theta), (x_m, y_m) = batch
    net.switch("finetune")
    loss = F.cross_entropy(net(x_theta), y_theta)
    opt.zero_grad()
    loss.backward()
    opt.step()
    net.switch("bilevel")
    net.zero_grad()  # the reference's optimizer.zero_grad() clears every parameter, scores included
    F.cross_entropy(net(x_m), y_m).backward()
    param_grad = torch.cat([s.grad.view(-1).detach() for s in net.scores()])
    net.switch("prune")
    mask_opt.zero_grad()
    F.cross_entropy(net(x_m), y_m).backward()
    mask_grad = torch.cat([s.grad.view(-1).detach() for s in net.scores()])
    implicit = -lr2 * mask_grad * param_grad
    pointer = 0
    for s in net.scores():
        s.grad.copy_(s.grad + implicit[pointer:pointer + s.numel()].view_as(s))
        pointer += s.numel()
    mask_opt.step()
    net(x_m)  # the forward that only logs accuracy (it still moves BatchNorm statistics)


def hydra_iteration(net, opt, batch):
    """trainer/base.py in prune mode: scores only (weights frozen)."""
    x, y = batch
    net.switch("prune")
    loss = F.cross_entropy(net(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
