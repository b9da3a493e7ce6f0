"""Score formulations for high sparsity: layer-wise budgets (uniform, ERK), |w| scores, the per-layer
normalised score step, the collapse watch and the per-layer TensorBoard curves."""

import math
from types import SimpleNamespace

import pytest
import torch

from bip_dist.models import build_model
from bip_dist.optim import FlatScoreSGD
from bip_dist.pruning import ScoreStore, make_prunable
from bip_dist.pruning.budget import erk_densities, layer_keep_counts
from bip_dist.engine import LocalEngine
from bip_dist.train.collapse import Collapsed, CollapseWatch
from bip_dist.train.loop import callbacks_for
from tests.helpers import runs



def _store(k, **kw):
    torch.manual_seed(0)
    model = make_prunable(build_model("resnet20s", 10), "unstructured")
    store = ScoreStore(model, k, "unstructured", **kw)
    store.init_scores("magnitude")
    store.refresh_mask()
    return store


def _kept(store):
    return [int(n) for n in store.layer_stats()["kept"].tolist()]


def test_erk_densities_keep_k_overall_and_favour_thin_layers():
    shapes = [(16, 3, 3, 3), (16, 16, 3, 3), (64, 64, 3, 3), (10, 64)]
    sizes = [math.prod(s) for s in shapes]
    for k in (0.5, 0.1, 0.01):
        d = erk_densities(shapes, k)
        assert all(0 < x <= 1 for x in d)
        assert sum(x * n for x, n in zip(d, sizes)) == pytest.approx(k * sum(sizes))
        assert d[0] >= d[1] > d[2]  # the stem keeps more than the widest convolution
    assert erk_densities(shapes, 0.5)[0] == 1.0  # capped, the excess handed to the others


@pytest.mark.parametrize("budget", ["uniform", "erk"])
def test_layerwise_budget_survives_a_runaway_layer(budget):
    """One layer's scores grow 1000x (the measured collapse mechanism): a global top-k then gives it the
    whole budget and empties every other layer; a layer-wise budget keeps each layer's count."""
    glob = _store(0.01)
    layer = _store(0.01, scope="layerwise", budget=budget)
    want = layer.layer_keep
    assert all(n >= 1 for n in want) and _kept(layer) == want
    for s in (glob, layer):
        a, b = s.offsets[3], s.offsets[4]
        s.scores[a:b].mul_(1000.0)
        s.refresh_mask()
    assert sum(n == 0 for n in _kept(glob)) >= len(glob.layers) // 2
    assert _kept(layer) == want
    if budget == "uniform":
        assert want == [layer.keep_count(n) for n in layer.layer_sizes()]
    assert sum(want) == pytest.approx(0.01 * layer.numel, rel=0.05)


def test_abs_init_is_the_weight_magnitude():
    store = _store(0.5)
    store.init_scores("abs")
    for w, s in zip(store.weights, store.params):
        assert torch.equal(s, w.detach().abs())


def test_layer_normalised_step_is_scale_free():
    """normalize: layer moves every layer's scores by lr x its own score norm, whatever the gradient's
    scale: a gradient 1000x larger in one layer gives the same step."""
    steps = []
    for scale in (1.0, 1000.0):
        store = _store(0.5)
        torch.manual_seed(1)
        store.grad.copy_(torch.randn_like(store.grad))
        store.grad[store.offsets[2]:store.offsets[3]].mul_(scale)
        before = store.scores.clone()
        cfg = SimpleNamespace(lr=0.01, momentum=0.0, weight_decay=0.0, nesterov=False, normalize="layer")
        FlatScoreSGD(store, cfg).step()
        delta = store.scores - before
        norms = [delta[a:b].norm() / before[a:b].norm() for a, b in zip(store.offsets[:-1], store.offsets[1:])]
        assert torch.allclose(torch.stack(norms), torch.full((len(norms),), 0.01), rtol=1e-4)
        steps.append(delta)
    assert torch.allclose(steps[0], steps[1], rtol=1e-4, atol=1e-9)


def _watch(action, tmp_path, store):
    w = CollapseWatch(every=1, action=action, is_main=True)
    parts = SimpleNamespace(store=store, meta={"num_classes": 10})
    w.on_start(None, parts, SimpleNamespace(num_classes=10), tmp_path)
    return w


def test_collapse_watch_names_the_dead_layer_once(tmp_path, capsys):
    store = _store(0.01)
    a, b = store.offsets[5], store.offsets[6]
    store.mask[a:b].zero_()
    w = _watch("warn", tmp_path, store)
    for step in (10, 20):
        w.on_step(SimpleNamespace(step=step), {})
    err = capsys.readouterr().err.strip().splitlines()
    name = store.layers[5][0]
    assert len(err) == 1 and "step 10" in err[0] and name in err[0] and "keep no weight" in err[0]
    assert name in (tmp_path / "log.txt").read_text()
    w.on_epoch_end(SimpleNamespace(step=30), {"val_top1": 10.33})
    assert "at chance" in capsys.readouterr().err
    with pytest.raises(Collapsed, match=name) as e:
        _watch("stop", tmp_path, store).on_step(SimpleNamespace(step=1), {})
    assert e.value.exit_code == 2


def test_healthy_run_is_not_reported(tmp_path, capsys):
    w = _watch("stop", tmp_path, _store(0.1, scope="layerwise"))
    w.on_step(SimpleNamespace(step=1), {})
    w.on_epoch_end(SimpleNamespace(step=2), {"val_top1": 80.0})
    assert capsys.readouterr().err == ""


def test_default_keeps_every_layer_alive_at_k_001(tmp_path, tiny_models):
    """A k = 0.01 BiP run of the tiny model under the default formulation: every layer keeps weights
    to the end, with on_collapse: stop (with prune.scope=global, the old default, conv1 and conv2 are
    emptied by step 6 and the run stops)."""
    cfg = runs.make_cfg(tmp_path, "bip", "prune.k=0.01", "prune.on_collapse=stop", "score_optim.lr=0.5")
    res = runs.run(cfg, callbacks=callbacks_for(cfg, LocalEngine()))
    from bip_dist.checkpoint.consolidate import load_model
    model = load_model(f"{res['run_dir']}/final.pt")["model"]
    masks = {k: v for k, v in model.items() if k.endswith(".mask")}
    assert len(masks) == 3 and all(int(m.sum()) >= 1 for m in masks.values())


def test_layer_curves_in_tensorboard(tmp_path, tiny_models):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = runs.make_cfg(tmp_path, "bip", "train.log_every=2", "train.epochs=1")
    res = runs.run(cfg, callbacks=callbacks_for(cfg, LocalEngine()))
    acc = EventAccumulator(f"{res['run_dir']}/tb")
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for kind in ("layer_kept", "layer_score_norm", "layer_score_grad_norm"):
        assert {f"{kind}/{n}" for n in ("conv1", "conv2", "fc")} <= tags
    kept = acc.Scalars("layer_kept/fc")
    assert kept and all(0.0 < e.value <= 1.0 for e in kept)
