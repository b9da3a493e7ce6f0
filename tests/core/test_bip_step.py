"""The fused two-pass BiP step equals the reference's three-pass step; passes are counted."""


import pytest
import torch

from bip_dist.config.schema import BipConfig, OptimConfig, ScoreOptimConfig
from bip_dist.engine import LocalEngine
from bip_dist.models import build_model
from bip_dist.optim import weight_params
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.registry import make_step


def _setup(fused, implicit="reference", granularity="unstructured", k=0.3, seed=0):
    torch.manual_seed(seed)
    model = make_prunable(build_model("resnet20s", 10), granularity)
    store = ScoreStore(model, k, granularity)
    store.init_scores("magnitude")
    store.refresh_mask()
    step = make_step("bip", LocalEngine(), model, store, OptimConfig(lr=0.05),
                     ScoreOptimConfig(lr=0.1, weight_decay=1e-4), BipConfig(fused=fused, implicit=implicit, lr2=1e-2))
    return model, store, step


def _batches(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        b = [(torch.randn(8, 3, 16, 16, generator=g), torch.randint(0, 10, (8,), generator=g)) for _ in range(2)]
        out.append(tuple(b))
    return out


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


@pytest.mark.parametrize("implicit", ["reference", "paper"])
@pytest.mark.parametrize("granularity", ["unstructured", "filter"])
def test_fused_equals_three_pass(implicit, granularity):
    m_f, s_f, step_f = _setup(True, implicit, granularity)
    m_r, s_r, step_r = _setup(False, implicit, granularity)
    for b in _batches(4):
        step_f(b)
        step_r(b)
    pf, pr = _params(m_f), _params(m_r)
    assert pf.keys() == pr.keys()
    for k in pf:
        torch.testing.assert_close(pf[k], pr[k], rtol=1e-5, atol=1e-7, msg=k)
    assert torch.equal(s_f.mask, s_r.mask)
    # the test is only meaningful if training moved weights, scores and the mask
    m0, s0, _ = _setup(True, implicit, granularity)
    assert not torch.equal(s0.scores, s_f.scores)
    assert not torch.equal(s0.mask, s_f.mask)


def test_implicit_gradient_changes_the_update():
    m_a, s_a, step_a = _setup(True, "reference")
    m_b, s_b, step_b = _setup(True, "none")
    b = _batches(1)[0]
    step_a(b)
    step_b(b)
    assert not torch.equal(s_a.scores, s_b.scores)


class _CountingEngine(LocalEngine):
    def __init__(self):
        super().__init__()
        self.forwards = self.backwards = 0

    def forward_theta(self, x):
        self.forwards += 1
        return super().forward_theta(x)

    def forward_scores(self, x):
        self.forwards += 1
        return super().forward_scores(x)

    def backward_theta(self, loss):
        self.backwards += 1
        super().backward_theta(loss)

    def backward_scores(self, loss):
        self.backwards += 1
        super().backward_scores(loss)


@pytest.mark.parametrize("fused,fwd,bwd", [(True, 2, 2), (False, 4, 3)])
def test_pass_count(fused, fwd, bwd):
    model, store, step = _setup(fused)
    eng = _CountingEngine()
    eng.prepare(model, store, step.engine.weight_opt)
    step.engine = eng
    out = step(_batches(1)[0])
    assert (eng.forwards, eng.backwards) == (fwd, bwd)
    assert out["n_theta"] == 8 and out["n_score"] == 8
    assert 0.0 <= out["mask_flips"] <= 1.0


def test_theta_step_touches_no_score_and_score_step_no_weight():
    model, store, step = _setup(True)
    wopt = step.engine.weight_opt
    held = {id(p) for g in wopt.param_groups for p in g["params"]}
    assert all(id(p) not in held for p in store.params)
    assert {id(p) for p in weight_params(model)} == held


@pytest.mark.parametrize("trainer", ["bip", "hydra", "bip_first_order"])
def test_score_grad_norm_only_at_logged_steps_and_training_unchanged(trainer):
    """The score-gradient norm costs a pass over every score: computed only where the loop logs it, and
    whether it is computed changes nothing else."""
    runs = {}
    for logged in (True, False):
        torch.manual_seed(0)
        model = make_prunable(build_model("resnet20s", 10), "unstructured")
        store = ScoreStore(model, 0.3, "unstructured")
        store.init_scores("magnitude")
        store.refresh_mask()
        step = make_step(trainer, LocalEngine(), model, store, OptimConfig(lr=0.05), ScoreOptimConfig(lr=0.1),
                         BipConfig(lr2=1e-2))
        step.engine.logged_step = logged
        seen = []
        norms = store.grad_norms
        store.grad_norms = lambda: seen.append(norms()) or seen[-1]
        for b in _batches(2):
            out = step(b if step.two_streams else b[0])
        runs[logged] = (out["score_grad_norm"], len(seen), store.scores.clone(), store.mask.clone(), _params(model),
                        out["layer_score_grad_norm"])
    on, off = runs[True], runs[False]
    assert on[1] == 2 and torch.is_tensor(on[0]) and on[0] > 0
    # The per-layer norms (TensorBoard's layer curves) make up the global one.
    assert on[5].shape == (len(store.layers),) and torch.allclose(on[5].norm(), on[0])
    assert off[1] == 0 and off[0] is None and off[5] is None
    assert torch.equal(on[2], off[2]) and torch.equal(on[3], off[3])
    assert all(torch.equal(on[4][k], off[4][k]) for k in on[4])
