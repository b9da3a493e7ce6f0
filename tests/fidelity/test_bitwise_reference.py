"""docs/fidelity.md, "What is bitwise": the digits BiP preset follows the reference loop bit for bit.

configs/digits/bip_reference.yaml (ResNet-20s, batch 64, k = 0.1) from a random start on the digits
images, against tests/helpers/reference_loop.py, for 24 iterations across two drops of the score lr:
weights, scores, masks, BatchNorm affine parameters and running statistics, and both momenta are
torch.equal after every iteration. Two things only show at this resolution, and a case built for each
checks it:
- the implicit gradient rounds as the reference's g + ((-lr2 * g) * g_b), not in one fused multiply-add
  (a 1-ulp difference early grows into thousands of mask entries within 24 iterations);
- an exact tie of |s| at the threshold keeps the entries the reference's sort keeps: a stable ascending
  sort, idx[j:] kept, i.e. of the tied entries those of highest index in the concatenation order.
"""

import pytest
import torch

from bip_dist.config import load_config
from bip_dist.data.presets import MEAN_STD
from bip_dist.engine import LocalEngine
from bip_dist.models import build_model
from bip_dist.optim import LrSchedule
from bip_dist.pruning.topk import BandedTopK, reference_topk_mask_, topk_mask_
from bip_dist.train.build import build_parts
from tests.helpers import ROOT
from tests.helpers import reference_loop as R

EPOCHS, SPE, BATCH = 12, 2, 64  # 24 iterations; the score lr drops at epochs 6 and 9 (iterations 12, 18)


def _preset():
    return load_config(ROOT / "configs" / "digits" / "bip_reference.yaml",
                       ["source_net=", "prune.from_scratch=true", f"train.epochs={EPOCHS}"])


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Both codes run in this process alike at any thread count; with two, their OpenMP threads spin
    against the other tests' processes on a busy 2-core runner (10-20x slower, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits():
    """sklearn's digits as 3-channel images normalised as the digits loaders do, at the 8x8 of the scans:
    `python -m data_prep digits` upsamples them to 32x32, which costs 16x the compute and changes none of
    the arithmetic under test."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.from_numpy(d.images).float().div_(16.0).unsqueeze(1).expand(-1, 3, -1, -1)
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD["digits"])
    return ((x - mean) / std).contiguous(), torch.from_numpy(d.target).long()


def _batches(data, iters, seed=0):
    """`iters` pairs (B_theta, B_m) of BATCH images from two independent shuffles of the training set."""
    x, y = data
    g = torch.Generator().manual_seed(seed)
    reps = iters * BATCH // len(y) + 1
    streams = [torch.cat([torch.randperm(len(y), generator=g) for _ in range(reps)]) for _ in range(2)]
    return [tuple((x[p[a:a + BATCH]], y[p[a:a + BATCH]]) for p in streams) for a in range(0, iters * BATCH, BATCH)]


def _twin(model, k):
    dense = build_model("resnet20s", 10)
    dense.load_state_dict({n: v for n, v in model.state_dict().items() if not n.endswith((".scores", ".mask"))})
    return R.ReferenceNet(dense, k)


def _assert_bitwise(parts, ref, opt, mask_opt, it):
    ref_params, ref_buffers = dict(ref.net.named_parameters()), dict(ref.net.named_buffers())
    w_opt = parts.step.engine.weight_opt
    for name, p in parts.model.named_parameters():
        q = ref_params[name.replace(".scores", ".popup_scores")]
        assert torch.equal(p, q), f"iteration {it}: {name}"
        if not name.endswith(".scores"):
            assert torch.equal(w_opt.state[p]["momentum_buffer"], opt.state[q]["momentum_buffer"]), \
                f"iteration {it}: momentum of {name}"
    for name, b in parts.model.named_buffers():
        if not name.endswith(".mask"):
            assert torch.equal(b, ref_buffers[name]), f"iteration {it}: {name}"
    ref_mask = ref.adj().detach()
    assert torch.equal(parts.store.mask, ref_mask), \
        f"iteration {it}: {int((parts.store.mask != ref_mask).sum())} mask entries differ"
    ref_buf = torch.cat([mask_opt.state[s]["momentum_buffer"].view(-1) for s in ref.scores()])
    assert torch.equal(parts.score_opt.buf, ref_buf), f"iteration {it}: score momentum"


def _run_both(parts, ref, cfg, batches):
    opt, mask_opt = R.optimizers(ref, cfg.optim, cfg.score_optim)
    w_lr = LrSchedule(cfg.optim, cfg.optim.lr, SPE, EPOCHS)
    s_lr = LrSchedule(cfg.score_optim, cfg.score_optim.lr, SPE, EPOCHS)
    rates = set()
    for it, batch in enumerate(batches):
        epoch = it // SPE
        lr_w, lr_s = R.cosine_lr(cfg.optim.lr, epoch, EPOCHS), R.step_lr(cfg.optim.lr, epoch, EPOCHS)
        assert (w_lr(it), s_lr(it)) == pytest.approx((lr_w, lr_s), rel=1e-12)
        rates.add(lr_s)
        parts.step.set_lrs(w_lr(it), s_lr(it))
        parts.step(batch)
        R.set_lr(opt, lr_w)
        R.set_lr(mask_opt, lr_s)
        R.bip_iteration(ref, opt, mask_opt, batch, cfg.bip.lr2)
        _assert_bitwise(parts, ref, opt, mask_opt, it)
    return rates


def test_digits_preset_is_bitwise_the_reference_for_24_iterations(digits):
    cfg = _preset()
    assert (cfg.model.arch, cfg.data.batch_size, cfg.prune.k) == ("resnet20s", BATCH, 0.1)
    parts = build_parts(cfg, LocalEngine(), 10)
    mask0 = parts.store.mask.clone()
    ref = _twin(parts.model, cfg.prune.k)
    rates = _run_both(parts, ref, cfg, _batches(digits, SPE * EPOCHS))
    assert len(rates) == 3  # across both drops of the score lr
    assert int((mask0 != parts.store.mask).sum()) > 1000  # the mask moved a lot, identical all along


def test_tie_at_the_threshold_is_broken_as_the_reference_does(digits):
    """Six entries of |s| (from several layers) made equal at the threshold: three are kept."""
    cfg = _preset()
    parts = build_parts(cfg, LocalEngine(), 10)
    store = parts.store
    n = store.numel
    j = n - store.keep_count(n)
    order = store.scores.abs().sort(stable=True).indices
    tied = order[j - 3:j + 3]
    with torch.no_grad():
        store.scores[tied] = store.scores[tied].sign() * store.scores[order[j]].abs()
        torch._foreach_copy_(store.weights, store.params)
    store.refresh_mask()
    layer_of = torch.bucketize(tied, torch.tensor(store.offsets), right=True)
    assert len(set(layer_of.tolist())) > 1
    highest = set(tied.sort().values[3:].tolist())
    assert store.mask[tied].tolist() == [float(i in highest) for i in tied.tolist()]
    other = store.mask.clone()
    topk_mask_(store.scores.abs(), other, n - j)
    assert not torch.equal(other, store.mask)  # the selection's own tie order would keep others
    ref = _twin(parts.model, cfg.prune.k)
    assert torch.equal(store.mask, ref.adj().detach())
    _run_both(parts, ref, cfg, _batches(digits, 2, seed=1))  # the tie decides which weights train first


def test_implicit_gradient_rounds_as_the_reference():
    """The score step on the preset's scores against trainer/bilevel.py's `g_m + (-lr2 * g_m) * g_b` and
    torch SGD, with gradients of size ~1, where about 35 entries per million round differently in one
    fused multiply-add. (Score gradients in the run above stay below 0.2, where a split is rare: none in
    200 iterations of it, measured; a split that does happen grows into thousands of mask entries.)"""
    cfg = _preset()
    parts = build_parts(cfg, LocalEngine(), 10)
    store, lr2 = parts.store, cfg.bip.lr2
    ref = _twin(parts.model, cfg.prune.k)
    _, mask_opt = R.optimizers(ref, cfg.optim, cfg.score_optim)
    gen = torch.Generator().manual_seed(0)
    for _ in range(2):  # the second step goes through the momentum of the first
        g_m, g_b = torch.randn(2, store.numel, generator=gen)  # prune-pass and bilevel-pass gradients
        assert not torch.equal(g_m + (-lr2 * g_m) * g_b, g_m.addcmul(g_m, g_b, value=-lr2))
        store.grad.copy_(g_m)
        parts.score_opt.step("reference", lr2, g_other=g_b)
        implicit = -lr2 * g_m * g_b
        for s, a, b in zip(ref.scores(), store.offsets[:-1], store.offsets[1:]):
            s.grad = (g_m[a:b] + implicit[a:b]).view_as(s)
        mask_opt.step()
        assert torch.equal(store.scores, torch.cat([s.detach().view(-1) for s in ref.scores()]))


@pytest.mark.parametrize("n", [1000, 300_000])
def test_reference_ties_are_those_of_a_stable_sort(n):
    """Both selections with `last_ties` against sort(stable=True) + idx[j:], on scores full of ties (and
    the banded one again after the scores moved, from its remembered threshold)."""
    g = torch.Generator().manual_seed(0)
    mag = torch.randint(0, 40, (n,), generator=g).float()
    banded, m1, m2 = BandedTopK(last_ties=True), torch.zeros(n), torch.zeros(n)
    for keep in (n // 10, n // 10 + 7):
        expected = torch.zeros(n)
        expected[mag.sort(stable=True).indices[n - keep:]] = 1
        reference_topk_mask_(mag, m1, keep)
        assert banded(mag, m2, keep) is not None
        assert torch.equal(m1, expected) and torch.equal(m2, expected)
        mag[torch.randint(0, n, (n // 100,), generator=g)] += 1
