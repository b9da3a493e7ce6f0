"""Fact 3 of docs/fidelity.md: how many entries a top-k keeps out of n.

    prune.kept_count: round      keep = max(1, round(k * n))                  (bip-dist's default)
    prune.kept_count: reference  keep = n - int((1 - k) * n)                  (GetSubnet*: j = int((1-k)*n)
                                                                               zeroed, the rest kept)
For unstructured masks n is every prunable weight (one global top-k); for filter / channel masks n is the
layer's filter / channel count.
"""

import pytest
import torch
import torch.nn as nn

from bip_dist.models import build_model
from bip_dist.pruning import ScoreStore, make_prunable

LTH = [0.8, 0.64, 0.512, 0.41, 0.328, 0.262, 0.2097, 0.1678, 0.1342, 0.1074, 0.0859, 0.0687, 0.055, 0.044,
       0.035, 0.028, 0.0225, 0.018, 0.0144, 0.0115, 0.0092]


def _store(k, granularity="unstructured", kept_count="reference"):
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Conv2d(3, 10, 3), nn.Conv2d(10, 7, 3), nn.Linear(7, 5)), granularity)
    store = ScoreStore(model, k, granularity, kept_count)
    store.init_scores("kaiming")
    return store


@pytest.mark.parametrize("k", LTH + [0.1, 0.3, 0.5, 0.9, 1.0])
def test_keep_count_formulas(k):
    ref, rnd = _store(k), _store(k, kept_count="round")
    for n in list(range(1, 300)) + [11_164_352, 25_502_912]:
        assert ref.keep_count(n) == n - int((1 - k) * n)
        assert rnd.keep_count(n) == max(1, int(round(k * n)))
        assert ref.keep_count(n) - rnd.keep_count(n) in (0, 1)  # about ceil(k*n) against round(k*n)


def test_resnet18_at_k_01():
    """The issue's example: the reference keeps one weight more of ResNet-18 (CIFAR) at k = 0.1."""
    model = build_model("resnet18", 10)
    n = sum(m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    ref, rnd = _store(0.1), _store(0.1, kept_count="round")
    assert (ref.keep_count(n), rnd.keep_count(n)) == (1_116_436, 1_116_435)


@pytest.mark.parametrize("granularity", ["unstructured", "filter", "channel"])
@pytest.mark.parametrize("kept_count", ["round", "reference"])
def test_mask_keeps_that_count(granularity, kept_count):
    k = 0.41  # k * n has a fractional part below 0.5 here, so the two rules differ
    store = _store(k, granularity, kept_count)
    other = _store(k, granularity, "round" if kept_count == "reference" else "reference")
    store.refresh_mask()
    if granularity == "unstructured":
        groups = [(store.mask, store.numel)]
    else:
        groups = [(m.mask, m.mask.numel()) for _, m in store.layers]
    for mask, n in groups:
        assert int(mask.sum()) == store.keep_count(n)
    assert any(store.keep_count(n) != other.keep_count(n) for _, n in groups)
