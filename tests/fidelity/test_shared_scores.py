"""Fact 2 of docs/fidelity.md: with `prune.score_init: shared` scores and weights are one variable.

Rules:
- s = w after initialisation, signed (the reference's `popup_scores.data = weight.data`);
- after the step of either optimizer s = w again, and the mask is the top-k of |w| with the reference's
  kept count: the weight step moves the scores, the score step moves the weights;
- the reference presets (configs/digits/{bip,hydra}_reference.yaml) follow for 5 iterations the trajectory
  of an independent re-implementation of the reference loop (tests/helpers/reference_loop.py): weights, scores,
  BatchNorm parameters and running statistics equal to fp32 tolerance, masks identical, learning rates
  those of the reference's schedule functions (one iteration per epoch, so every rate is visited);
- shared scores are refused for filter / channel masks, with one line.
"""

import pytest
import torch

from bip_dist.config.load import ConfigError
from bip_dist.engine import LocalEngine
from bip_dist.optim import LrSchedule
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.build import build_parts
from tests.helpers import reference_loop as R
from tests.helpers.fidelity import ITERS, batches, preset, reference_twin
from tests.helpers.models import CLASSES, TinyNet

pytestmark = pytest.mark.usefixtures("tiny_models")


def assert_same_state(parts, ref, it):
    ref_params = dict(ref.net.named_parameters())
    ref_buffers = dict(ref.net.named_buffers())
    for name, p in parts.model.named_parameters():
        torch.testing.assert_close(p, ref_params[name.replace(".scores", ".popup_scores")], rtol=1e-5,
                                   atol=1e-6, msg=f"iteration {it}: {name}")
    for name, b in parts.model.named_buffers():
        if not name.endswith(".mask"):
            torch.testing.assert_close(b, ref_buffers[name], rtol=1e-5, atol=1e-6,
                                       msg=f"iteration {it}: {name}")
    assert torch.equal(parts.store.mask, ref.adj().detach()), f"iteration {it}: masks differ"
    for _, m in parts.store.layers:  # one variable: bitwise
        assert torch.equal(m.scores, m.weight)


def test_bip_preset_follows_reference_trajectory():
    cfg = preset("bip")
    parts = build_parts(cfg, LocalEngine(), CLASSES)
    store = parts.store
    assert store.shared and all(torch.equal(m.scores, m.weight) for _, m in store.layers)
    assert (store.scores < 0).any()  # signed: s = w, not |w|
    n = store.numel
    assert int(store.mask.sum()) == n - int((1 - cfg.prune.k) * n) != round(cfg.prune.k * n)
    ref = reference_twin(parts.model, cfg.prune.k)
    opt, mask_opt = R.optimizers(ref, cfg.optim, cfg.score_optim)
    w_lr = LrSchedule(cfg.optim, cfg.optim.lr, 1, ITERS)
    s_lr = LrSchedule(cfg.score_optim, cfg.score_optim.lr, 1, ITERS)
    mask0 = store.mask.clone()
    for epoch, batch in enumerate(batches(True)):
        lr_w, lr_s = R.cosine_lr(cfg.optim.lr, epoch, ITERS), R.step_lr(cfg.optim.lr, epoch, ITERS)
        assert (w_lr(epoch), s_lr(epoch)) == pytest.approx((lr_w, lr_s), rel=1e-12)
        parts.step.set_lrs(w_lr(epoch), s_lr(epoch))
        parts.step(batch)
        R.set_lr(opt, lr_w)
        R.set_lr(mask_opt, lr_s)
        R.bip_iteration(ref, opt, mask_opt, batch, cfg.bip.lr2)
        assert_same_state(parts, ref, epoch)
    assert not torch.equal(mask0, store.mask)  # the mask moved, so identical masks mean something


def test_hydra_preset_follows_reference_trajectory():
    cfg = preset("hydra")
    parts = build_parts(cfg, LocalEngine(), CLASSES)
    ref = reference_twin(parts.model, cfg.prune.k)
    _, opt = R.optimizers(ref, cfg.optim, cfg.score_optim)
    s_lr = LrSchedule(cfg.score_optim, cfg.score_optim.lr, 1, ITERS)
    w0 = [m.weight.detach().clone() for _, m in parts.store.layers]
    for epoch, batch in enumerate(batches(False)):
        lr = R.cosine_lr(cfg.score_optim.lr, epoch, ITERS)
        assert s_lr(epoch) == pytest.approx(lr, rel=1e-12)
        parts.step.set_lrs(0.0, s_lr(epoch))
        parts.step(batch)
        R.set_lr(opt, lr)
        R.hydra_iteration(ref, opt, batch)
        assert_same_state(parts, ref, epoch)
    # Only the score optimizer ran, yet the weights moved: they are the scores.
    assert all(not torch.equal(w, m.weight) for w, (_, m) in zip(w0, parts.store.layers))


def test_shared_scores_refused_for_structured_masks():
    with pytest.raises(ConfigError, match="prune.score_init = 'shared' needs prune.layer_type: unstructured"):
        preset("bip", "prune.layer_type=channel")
    model = make_prunable(TinyNet(CLASSES), "filter")
    with pytest.raises(ValueError, match="shared scores need unstructured masks"):
        ScoreStore(model, 0.5, "filter").init_scores("shared")


def test_each_optimizer_holds_its_own_variables():
    """Fact 5: bip-dist's theta optimizer holds every parameter but the scores, the score optimizer only
    the scores (the reference's two optimizers each hold every parameter; not reproduced)."""
    parts = build_parts(preset("bip"), LocalEngine(), CLASSES)
    held = {id(p) for g in parts.step.engine.weight_opt.param_groups for p in g["params"]}
    scores = {id(p) for p in parts.store.params}
    assert held.isdisjoint(scores)
    assert held | scores == {id(p) for p in parts.model.parameters()}
    assert parts.score_opt.store.scores.numel() == sum(p.numel() for p in parts.store.params)
