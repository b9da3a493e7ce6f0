"""The flat score optimizer is torch.optim.SGD on the score buffer, bit for bit, plus the IG terms."""

from types import SimpleNamespace

import pytest
import torch

from bip_dist.optim import FlatScoreSGD


def _store(n, seed):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(scores=torch.randn(n, generator=g), grad=torch.zeros(n))


@pytest.mark.parametrize("momentum,nesterov,wd", [(0.9, False, 0.0), (0.9, True, 1e-4), (0.0, False, 1e-4)])
def test_matches_torch_sgd_bitwise(momentum, nesterov, wd):
    store = _store(10_000, 0)
    ref = torch.nn.Parameter(store.scores.clone())
    torch_opt = torch.optim.SGD([ref], lr=0.1, momentum=momentum, nesterov=nesterov, weight_decay=wd)
    opt = FlatScoreSGD(store, SimpleNamespace(lr=0.1, momentum=momentum, weight_decay=wd, nesterov=nesterov))
    gen = torch.Generator().manual_seed(1)
    for _ in range(4):
        g = torch.randn(store.scores.shape, generator=gen)
        store.grad.copy_(g)
        ref.grad = g.clone()
        opt.step()
        torch_opt.step()
        assert torch.equal(store.scores, ref.detach())


def test_reference_ig_scales_gradient_before_the_step():
    store = _store(1000, 2)
    start = store.scores.clone()
    g = torch.randn(1000, generator=torch.Generator().manual_seed(3))
    store.grad.copy_(g)
    FlatScoreSGD(store, SimpleNamespace(lr=0.5, momentum=0.0, weight_decay=0.0, nesterov=False)).step(
        "reference", lr2=0.01)
    torch.testing.assert_close(store.scores, start - 0.5 * (g - 0.01 * g * g))
