"""First-order BiP: the one backward gives both levels' gradients, the step is BiP's update from one point,
and it costs one forward and one backward."""

import pytest
import torch
import torch.nn.functional as F

from bip_dist.config.schema import BipConfig, OptimConfig, ScoreOptimConfig
from bip_dist.engine import LocalEngine
from bip_dist.optim import FlatScoreSGD, weight_optimizer, weight_params
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.metrics import images, scalarize
from bip_dist.train.registry import make_step
from bip_dist.train.steps import set_requires_grad
from tests.helpers.data import make_data
from tests.helpers.models import CLASSES, TinyNet

GRANULARITIES = ["unstructured", "filter", "channel"]
OPTIM, SCORE_OPTIM = OptimConfig(lr=0.05), ScoreOptimConfig(lr=0.2, weight_decay=1e-4)


def _setup(trainer="bip_first_order", granularity="unstructured", implicit="reference"):
    """TinyNet with scores of both signs (kaiming), so the sign(s) factor of the score gradient matters."""
    torch.manual_seed(0)
    model = make_prunable(TinyNet(CLASSES), granularity)
    store = ScoreStore(model, 0.5, granularity)
    store.init_scores("kaiming", generator=torch.Generator().manual_seed(0))
    store.refresh_mask()
    step = make_step(trainer, LocalEngine(), model, store, OPTIM, SCORE_OPTIM,
                     BipConfig(implicit=implicit, lr2=0.5))
    model.train()
    return model, store, step


def _batches(n, two_streams=False):
    x, y = make_data(16 * n, seed=3)
    out = [(x[i * 8:(i + 1) * 8], y[i * 8:(i + 1) * 8]) for i in range(2 * n)]
    return list(zip(out[::2], out[1::2])) if two_streams else out[:n]


def _grads(params):
    return [p.grad.clone() for p in params]


@pytest.mark.parametrize("granularity", GRANULARITIES)
def test_one_backward_gives_both_levels_gradients(granularity):
    model, store, step = _setup(granularity=granularity)
    assert (store.scores < 0).any() and (store.scores > 0).any()
    e, weights = step.engine, weight_params(model)
    x, y = _batches(1)[0]
    step.gradients(x, y, keep_weight_grads=True)
    joint_theta, joint_score = _grads(weights), store.grad.clone()
    # (a) a weights-only pass at the same point on the same batch
    set_requires_grad(weights, True)
    store.set_trainable(False)
    e.zero_theta()
    e.backward_theta(F.cross_entropy(e.forward_theta(x), y))
    for i, (g, ref) in enumerate(zip(joint_theta, _grads(weights))):
        torch.testing.assert_close(g, ref, rtol=1e-5, atol=1e-7, msg=f"weight parameter {i}")
    # (b) a scores-only pass at the same point on the same batch
    set_requires_grad(weights, False)
    store.set_trainable(True)
    store.zero_grad()
    e.backward_scores(F.cross_entropy(e.forward_scores(x), y))
    torch.testing.assert_close(joint_score, store.grad, rtol=1e-5, atol=1e-7)
    assert joint_score.abs().sum() > 0 and all(g.abs().sum() > 0 for g in joint_theta)


def _separate_passes_step(model, store, weight_opt, score_opt, batch, implicit, lr2):
    """The specification, spelled out: both gradients at (theta_t, m_t) on one batch, from two passes,
    then each level's optimizer step (with the IG term) and the top-k projection."""
    x, y = batch
    weights = weight_params(model)
    set_requires_grad(weights, False)
    store.set_trainable(True)
    store.zero_grad()
    F.cross_entropy(model(x), y).backward()
    g_s = store.grad.clone()
    set_requires_grad(weights, True)
    store.set_trainable(False)
    weight_opt.zero_grad()
    F.cross_entropy(model(x), y).backward()
    ig = torch.cat([m.weight.grad.pow(2).sum_to_size(m.scores.shape).reshape(-1) for _, m in store.layers])
    weight_opt.step()
    store.grad.copy_(g_s)
    score_opt.step(implicit, lr2, ig=ig)
    store.refresh_mask()


@pytest.mark.parametrize("implicit", ["reference", "paper", "none"])
def test_step_is_both_updates_from_one_point(implicit):
    model, store, step = _setup(implicit=implicit)
    ref_model, ref_store, _ = _setup(trainer="bip", implicit=implicit)
    start_mask = ref_store.mask.clone()
    w_opt = weight_optimizer(weight_params(ref_model), OPTIM)
    s_opt = FlatScoreSGD(ref_store, SCORE_OPTIM)
    for b in _batches(4):
        step(b)
        _separate_passes_step(ref_model, ref_store, w_opt, s_opt, b, implicit, lr2=0.5)
    ref = dict(ref_model.named_parameters())
    for name, p in model.named_parameters():
        torch.testing.assert_close(p, ref[name], rtol=1e-5, atol=1e-6, msg=name)
    assert torch.equal(store.mask, ref_store.mask)
    assert not torch.equal(store.mask, start_mask)  # the comparison covers a moving mask


def _count_passes(model):
    """Forwards through `model`, and backwards that reach its output."""
    n = {"forward": 0, "backward": 0}

    def on_forward(_module, _inputs, out):
        n["forward"] += 1
        if out.requires_grad:
            out.register_hook(lambda g: n.__setitem__("backward", n["backward"] + 1))
    model.register_forward_hook(on_forward)
    return n


@pytest.mark.parametrize("trainer,passes", [("bip_first_order", 1), ("bip", 2)])
def test_passes_per_step(trainer, passes):
    model, _, step = _setup(trainer=trainer)
    n = _count_passes(model)
    step(_batches(1, step.two_streams)[0])
    assert n == {"forward": passes, "backward": passes}


def test_reports_bips_metric_keys_and_counts_its_batch_once():
    _, _, fo = _setup()
    _, _, bip = _setup(trainer="bip")
    out = fo(_batches(1)[0])
    assert set(out) == set(bip(_batches(1, two_streams=True)[0])) | {"n_images"}
    assert images(out) == 8
    res = scalarize(out)
    assert res["loss_theta"] == res["loss_score"] and res["top1_theta"] == res["top1_score"]
