"""Masks: exact top-k counts, straight-through gradients, flat views, refresh only when asked."""

import pytest
import torch
import torch.nn as nn

from bip_dist.models import build_model
from bip_dist.pruning import ScoreStore, make_prunable, sparsity_report


def _store(granularity, k, arch="resnet20s"):
    torch.manual_seed(0)
    model = make_prunable(build_model(arch, 10), granularity)
    store = ScoreStore(model, k, granularity)
    store.init_scores("magnitude")
    store.refresh_mask()
    return model, store


@pytest.mark.parametrize("k", [0.5, 0.1, 0.0092])
def test_unstructured_global_topk_count(k):
    model, store = _store("unstructured", k)
    assert int(store.mask.sum()) == round(k * store.numel)
    assert store.sparsity() == pytest.approx(1 - k, abs=1e-4)
    rep = sparsity_report(model)
    assert rep["global_sparsity"] == pytest.approx(1 - k, abs=1e-4)
    # global: per-layer ratios differ (learned allocation), not k everywhere
    ratios = {round(v["sparsity"], 3) for v in rep["layers"].values()}
    assert len(ratios) > 1


@pytest.mark.parametrize("granularity", ["filter", "channel"])
def test_structured_per_layer_count(granularity):
    model, store = _store(granularity, 0.5)
    for _, m in store.layers:
        n = m.scores.numel()
        assert int(m.mask.sum()) == max(1, round(0.5 * n))
        wm = m.mask.expand_as(m.weight)
        dim = 0 if granularity == "filter" else 1
        other = tuple(d for d in range(m.weight.dim()) if d != dim)
        per_slice = wm.sum(dim=other)
        assert set(per_slice.unique().tolist()) <= {0.0, float(m.weight[0].numel() if dim == 0
                                                             else m.weight[:, 0].numel())}


def test_mask_is_topk_of_abs_scores():
    model, store = _store("unstructured", 0.3)
    store.scores.copy_(torch.randn(store.numel))
    store.refresh_mask()
    kept = store.scores.abs()[store.mask.bool()]
    dropped = store.scores.abs()[~store.mask.bool()]
    assert kept.min() >= dropped.max()


def test_views_share_flat_storage():
    model, store = _store("unstructured", 0.5)
    _, layer = store.layers[3]
    a, b = store.offsets[3], store.offsets[4]
    store.scores[a] = 123.0
    assert layer.scores.view(-1)[0].item() == 123.0
    assert layer.mask.data_ptr() == store.mask[a:b].data_ptr()
    out = model(torch.randn(2, 3, 32, 32)).sum()
    out.backward()
    assert store.grad[a:b].abs().sum() > 0
    assert layer.scores.grad.data_ptr() == store.grad[a:b].data_ptr()


def test_forward_never_recomputes_mask():
    model, store = _store("unstructured", 0.2)
    before = store.mask.clone()
    store.scores.mul_(-1).add_(torch.randn(store.numel))  # scores change, mask must not until refresh
    model(torch.randn(2, 3, 32, 32))
    assert torch.equal(before, store.mask)
    assert store.refresh_mask() > 0


def test_straight_through_gradients():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3)
    model = make_prunable(nn.Sequential(conv), "unstructured")
    store = ScoreStore(model, 0.5, "unstructured")
    store.init_scores("kaiming")
    store.refresh_mask()
    layer = model[0]
    x = torch.randn(2, 3, 8, 8)
    w_eff = (layer.weight.detach() * layer.mask).requires_grad_(True)
    nn.functional.conv2d(x, w_eff, layer.bias).pow(2).sum().backward()
    g = w_eff.grad
    store.zero_grad()
    layer(x).pow(2).sum().backward()
    torch.testing.assert_close(layer.scores.grad, g * layer.weight.detach() * layer.scores.detach().sign())
    torch.testing.assert_close(layer.weight.grad, g * layer.mask)


def test_filter_score_gradient_is_summed_over_filter():
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Conv2d(3, 4, 3)), "filter")
    store = ScoreStore(model, 1.0, "filter")
    store.init_scores("magnitude")  # positive scores: sign(s) = 1
    layer = model[0]
    assert layer.scores.shape == (4, 1, 1, 1)
    x = torch.randn(2, 3, 8, 8)
    w_eff = layer.weight.detach().clone().requires_grad_(True)
    nn.functional.conv2d(x, w_eff, layer.bias).sum().backward()
    store.zero_grad()
    layer(x).sum().backward()
    expect = (w_eff.grad * layer.weight.detach()).sum(dim=(1, 2, 3), keepdim=True)
    torch.testing.assert_close(layer.scores.grad, expect)


def test_magnitude_init_is_scaled_weight():
    model, store = _store("unstructured", 0.5)
    _, layer = store.layers[0]
    w = layer.weight.detach()
    fan_in = w[0].numel()
    torch.testing.assert_close(layer.scores, (6.0 / fan_in) ** 0.5 * w.abs() / w.abs().max())


def _reference_mask(scores, keep):
    """top-k of |s| with ties at the threshold broken towards the lowest index (a stable sort)."""
    ref = torch.zeros_like(scores)
    ref[torch.sort(scores.abs(), descending=True, stable=True).indices[:keep]] = 1
    return ref


def _big_store(k=0.1):
    """1100 x 1024 scores: above the size where the CPU takes the banded selection."""
    model = make_prunable(nn.Sequential(nn.Linear(1024, 1100)), "unstructured")
    return ScoreStore(model, k, "unstructured")


@pytest.mark.parametrize("kind", ["distinct", "tied", "zeros"])
def test_banded_selection_equals_topk(kind, monkeypatch):
    """Exact over steps that move scores a little (the last threshold brackets the new one) and a lot
    (the bracket misses): same kept magnitudes as topk, ties kept at the lowest index, exact flip count."""
    monkeypatch.setattr("bip_dist.pruning.store.topk_mask_", None)  # the banded path must do it all
    torch.manual_seed(0)
    store = _big_store(k=0.4 if kind == "zeros" else 0.1)
    keep = store.keep_count(store.numel)
    vals = torch.randn(store.numel)
    if kind == "zeros":  # fewer nonzero scores than kept entries: the threshold is 0, a huge tie
        vals[: store.numel * 2 // 3] = 0
    for step, move in enumerate([0.0, 1e-3, 1e-3, 0.5, 1e-3]):
        vals = vals + move * torch.randn(store.numel)
        store.scores.copy_(vals.round(decimals=1) if kind == "tied" else vals)
        before = store.mask.clone()
        flips = store.refresh_mask()
        assert torch.equal(store.mask, _reference_mask(store.scores, keep)), step
        kept = store.scores.abs()[store.mask.bool()].sort().values
        torch.testing.assert_close(kept, torch.topk(store.scores.abs(), keep).values.sort().values, rtol=0, atol=0)
        assert flips.dim() == 0 and flips.dtype == torch.float64
        assert flips.item() == int((before != store.mask).sum()) / store.numel


@pytest.mark.parametrize("how", ["layer view", "load_state_dict"])
def test_banded_selection_sees_a_mask_written_from_outside(how, monkeypatch):
    """The selection remembers its kept count between steps; a mask written in between, through a layer's
    view or a state_dict load (a resume, a baseline), must be counted again, or the result is not top-k."""
    monkeypatch.setattr("bip_dist.pruning.store.topk_mask_", None)
    torch.manual_seed(0)
    store = _big_store()
    keep = store.keep_count(store.numel)
    store.scores.copy_(torch.randn(store.numel))
    store.refresh_mask()
    layer = store.layers[0][1]
    if how == "layer view":
        layer.mask[:50].copy_(1 - layer.mask[:50])  # the kept count is now off by thousands
    else:
        sd = {k: v.clone() for k, v in layer.state_dict().items()}
        sd["mask"].zero_()
        layer.load_state_dict(sd)
    store.scores.add_(1e-4 * torch.randn(store.numel))
    store.refresh_mask()
    assert torch.equal(store.mask, _reference_mask(store.scores, keep))


def test_banded_selection_falls_back_to_topk(monkeypatch):
    """When no band holds the threshold, the plain selection takes over and nothing half-written stays."""
    from bip_dist.pruning.topk import BandedTopK
    torch.manual_seed(0)
    store = _big_store()
    store.scores.copy_(torch.randn(store.numel))
    monkeypatch.setattr(BandedTopK, "_sample_band", lambda self, scores, keep: (10.0, 11.0))
    before = store.mask.clone()
    flips = store.refresh_mask()
    keep = store.keep_count(store.numel)
    assert int(store.mask.sum()) == keep
    assert store.scores.abs()[store.mask.bool()].min() >= store.scores.abs()[~store.mask.bool()].max()
    assert flips.item() == int((before != store.mask).sum()) / store.numel


@pytest.mark.parametrize("granularity,out_features", [("unstructured", 1100), ("unstructured", 8),
                                                      ("filter", 64)])
def test_flip_rate_counts_changed_entries(granularity, out_features):
    """1100 x 1024 scores take the banded selection, the small layers plain topk."""
    torch.manual_seed(0)
    model = make_prunable(nn.Sequential(nn.Linear(1024, out_features)), granularity)
    store = ScoreStore(model, 0.25, granularity)
    store.init_scores("kaiming")
    assert store.refresh_mask() > 0  # from the all-ones start
    before = store.mask.clone()
    store.scores.add_(0.05 * torch.randn(store.numel))
    flips = store.refresh_mask()
    changed = int((before != store.mask).sum())
    assert changed > 0 and flips == changed / store.numel
    assert store.refresh_mask() == 0.0  # unchanged scores, unchanged mask
