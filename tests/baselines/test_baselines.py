"""OMP (global, layer-wise, structured), random and IMP masks hit the requested sparsity; IMP rewinds."""

from pathlib import Path

import pytest
import torch

from bip_dist.baselines import apply_ranking, imp_ranking, imp_schedule, omp_ranking, random_ranking
from bip_dist.models import build_model
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.train.callbacks import Callback
from tests.helpers import runs


def _store(granularity="unstructured", k=0.2, arch="resnet20s"):
    torch.manual_seed(0)
    model = make_prunable(build_model(arch, 10), granularity)
    return model, ScoreStore(model, k, granularity)


def _kept_weights(store):
    return torch.cat([m.weight.detach()[store.weight_mask(m).bool()].abs() for _, m in store.layers])


def _pruned_weights(store):
    return torch.cat([m.weight.detach()[~store.weight_mask(m).bool()].abs() for _, m in store.layers])


@pytest.mark.parametrize("k", [0.8, 0.2, 0.0092])
def test_omp_global(k):
    _, store = _store(k=k)
    sparsity = apply_ranking(store, omp_ranking(store), "global")
    assert sparsity == pytest.approx(1 - k, abs=1e-4)
    assert _kept_weights(store).min() >= _pruned_weights(store).max()  # largest |w| over the whole net


def test_omp_layerwise():
    _, store = _store(k=0.3)
    apply_ranking(store, omp_ranking(store), "layer")
    for name, m in store.layers:
        assert m.mask.mean().item() == pytest.approx(store.keep_count(m.mask.numel()) / m.mask.numel()), name
        w = m.weight.detach().abs()
        assert w[m.mask.bool()].min() >= w[~m.mask.bool()].max(), name
    # global differs from layer-wise: layers end at different sparsities
    _, g = _store(k=0.3)
    apply_ranking(g, omp_ranking(g), "global")
    assert len({round(m.mask.mean().item(), 2) for _, m in g.layers}) > 1


@pytest.mark.parametrize("granularity", ["filter", "channel"])
def test_omp_structured(granularity):
    _, store = _store(granularity, k=0.5)
    apply_ranking(store, omp_ranking(store), "global")
    dim = (1, 2, 3) if granularity == "filter" else (0, 2, 3)
    for name, m in store.layers:
        if m.weight.dim() != 4:
            continue
        norms = m.weight.detach().pow(2).sum(dim).sqrt()
        keep = m.mask.reshape(-1).bool()
        assert keep.sum() == store.keep_count(keep.numel()), name
        assert norms[keep].min() >= norms[~keep].max(), name


def test_random_mask():
    _, a = _store(k=0.1)
    _, b = _store(k=0.1)
    apply_ranking(a, random_ranking(a, torch.Generator().manual_seed(3)))
    apply_ranking(b, random_ranking(b, torch.Generator().manual_seed(3)))
    assert a.sparsity() == pytest.approx(0.9, abs=1e-4)
    assert torch.equal(a.mask, b.mask)  # seeded
    _, o = _store(k=0.1)
    apply_ranking(o, omp_ranking(o))
    assert (a.mask != o.mask).float().mean() > 0.05


def test_imp_round_prunes_only_survivors():
    model, store = _store(k=0.8)
    apply_ranking(store, omp_ranking(store))
    prev = store.mask.clone()
    with torch.no_grad():  # "train" the survivors: the next round must rank these new weights
        for _, m in store.layers:
            m.weight.mul_(torch.rand_like(m.weight) + 0.5)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    store.k = 0.64
    apply_ranking(store, imp_ranking(store, state))
    assert store.sparsity() == pytest.approx(0.36, abs=1e-4)
    assert torch.all(store.mask <= prev)


def test_imp_schedule_hits_paper_series():
    lth = [0.8, 0.64, 0.512, 0.41, 0.328, 0.262, 0.2097, 0.1678, 0.1342, 0.1074, 0.0859]
    assert imp_schedule(lth) == lth
    assert imp_schedule([0.512, 0.2097]) == [0.8, 0.64, 0.512, 0.4096, 0.32768, 0.262144, 0.2097]


def test_imp_end_to_end_rewinds(tmp_path, tiny_models):
    """pretrain saving rewind.pt after epoch 1 -> IMP round 1 (k=0.8) -> round 2 (k=0.64): each round
    starts from the rewind weights under a mask nested in the previous round's."""
    from bip_dist.checkpoint.io import load_checkpoint
    from bip_dist.engine import LocalEngine
    from bip_dist.train.loop import callbacks_for

    def run(*overrides):  # 4 steps per epoch (batch 24)
        cfg = runs.tiny_cfg(tmp_path, "data.batch_size=24", "name=imp", "log.tensorboard=false", *overrides)
        engine = LocalEngine()
        seen = Start()
        res = runs.run(cfg, engine, callbacks=[seen] + callbacks_for(cfg, engine))
        return Path(res["run_dir"]), seen

    class Start(Callback):
        def on_start(self, state, parts, loaders, run_dir):
            self.weights = {n: m.weight.detach().clone() for n, m in parts.store.layers} if parts.store else {}
            self.mask = parts.store.mask.clone() if parts.store else None

    pre, _ = run("mode=pretrain", "trainer=dense", "baseline.save_rewind=1ep")
    rewind = load_checkpoint(pre / "rewind.pt")
    assert rewind["state"] == {"step": 4, "epoch": 1}
    final = load_checkpoint(pre / "final.pt")["model"]
    assert not torch.equal(rewind["model"]["conv1.weight"], final["conv1.weight"])
    common = ["mode=prune", "trainer=imp", "prune.layer_type=unstructured", f"source_net={pre / 'rewind.pt'}"]
    r1, s1 = run(*common, "prune.k=0.8", f"baseline.mask_from={pre / 'final.pt'}")
    r2, s2 = run(*common, "prune.k=0.64", f"baseline.mask_from={r1 / 'final.pt'}")
    for seen in (s1, s2):
        for name, w in seen.weights.items():
            assert torch.equal(w, rewind["model"][f"{name}.weight"]), name
    assert 1 - s1.mask.mean().item() == pytest.approx(0.2, abs=1e-3)
    assert 1 - s2.mask.mean().item() == pytest.approx(0.36, abs=1e-3)
    assert torch.all(s2.mask <= s1.mask)
    m2 = load_checkpoint(r2 / "final.pt")["model"]
    assert torch.equal(torch.cat([m2[f"{n}.mask"].reshape(-1) for n in s2.weights]), s2.mask)
    # OMP and random through the same loop: the mask set before step 0 is the one trained and saved
    for trainer in ("omp", "random"):
        r, s = run("mode=prune", f"trainer={trainer}", "prune.layer_type=unstructured", "prune.k=0.3",
                   f"source_net={pre / 'final.pt'}")
        assert 1 - s.mask.mean().item() == pytest.approx(0.7, abs=1e-3)
        m = load_checkpoint(r / "final.pt")["model"]
        assert torch.equal(torch.cat([m[f"{n}.mask"].reshape(-1) for n in s.weights]), s.mask)


def test_omp_needs_source(tmp_path, tiny_models):
    from bip_dist.engine import LocalEngine
    from bip_dist.train.build import build_parts
    cfg = runs.tiny_cfg(tmp_path, "mode=prune", "trainer=omp", "prune.layer_type=unstructured", "prune.k=0.5")
    with pytest.raises(ValueError, match="trainer 'omp' needs source_net"):
        build_parts(cfg, LocalEngine(), 10)
