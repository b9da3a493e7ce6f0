"""Fact 1 of the fidelity table: the score gradient is d/ds of w * TopK-STE(|s|), so it carries sign(s).

The reference differentiates through `scores.abs()`; the straight-through estimator hands the mask's
gradient to |s|. Checked against that formula written with plain autograd, with scores of both signs, for
every granularity.
"""

import pytest
import torch
import torch.nn as nn

from bip_dist.pruning.layers import make_prunable
from bip_dist.pruning.store import ScoreStore


def _autograd_reference(conv, scores, mask, x, through_abs=True):
    """w * STE(|s|): forward uses the mask, backward passes the gradient to |s| unchanged."""
    s = scores.detach().clone().requires_grad_(True)
    a = s.abs() if through_abs else s
    m = mask + (a - a.detach())
    w_eff = conv.weight.detach() * m
    out = nn.functional.conv2d(x, w_eff, conv.bias.detach())
    out.pow(2).mean().backward()
    return s.grad


@pytest.mark.parametrize("granularity", ["unstructured", "filter", "channel"])
def test_score_gradient_matches_autograd_through_abs(granularity):
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Conv2d(6, 8, 3)), granularity)
    store = ScoreStore(model, 0.5, granularity)
    store.init_scores("kaiming")  # uniform(-b, b): both signs
    store.refresh_mask()
    layer = model[0]
    assert (layer.scores < 0).any() and (layer.scores > 0).any()
    x = torch.randn(4, 6, 10, 10)
    expect = _autograd_reference(layer, layer.scores, layer.mask, x)
    store.set_trainable(True)
    layer.weight.requires_grad_(False)
    store.zero_grad()
    layer(x).pow(2).mean().backward()
    torch.testing.assert_close(layer.scores.grad, expect, rtol=1e-5, atol=1e-7)
    neg = layer.scores.detach() < 0
    # On a negative score the gradient is the opposite of the unsigned straight-through one.
    unsigned = _autograd_reference(layer, layer.scores, layer.mask, x, through_abs=False)
    assert torch.equal(layer.scores.grad[neg], -unsigned[neg])

def test_descent_shrinks_a_negative_score_that_hurts():
    """One weight whose presence raises the loss: descent must lower |s| whatever the sign of s."""
    for sign in (1.0, -1.0):
        lin = make_prunable(nn.Sequential(nn.Linear(1, 1, bias=False)), "unstructured")[0]
        store = ScoreStore(nn.Sequential(lin), 1.0, "unstructured")
        with torch.no_grad():
            lin.weight.fill_(1.0)
            store.scores.fill_(sign * 0.5)
        store.refresh_mask()
        store.set_trainable(True)
        store.zero_grad()
        lin(torch.ones(1, 1)).sum().backward()  # loss = w * m: keeping the weight costs
        new = store.scores - 0.1 * store.grad
        assert new.abs().item() < 0.5
