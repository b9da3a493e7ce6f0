"""Compact export reproduces the masked model's outputs (eval, 1e-5) with fewer parameters and MACs."""

import json

import pytest
import torch
import torch.nn as nn

from bip_dist.compact import BiasMapConv, compact_model, compare
from bip_dist.models import build_model
from bip_dist.pruning import ScoreStore, make_prunable


def _masked(arch, granularity, k=0.5, seed=0):
    """A pruned model with random masks and non-trivial BatchNorm statistics, so pruned filters leave
    non-zero constants behind (the case that needs folding)."""
    torch.manual_seed(seed)
    model = make_prunable(build_model(arch, 10), granularity)
    store = ScoreStore(model, k, granularity)
    store.init_scores("kaiming", torch.Generator().manual_seed(seed + 1))
    store.refresh_mask()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return model.eval()


@pytest.mark.parametrize("arch", ["resnet20s", "vgg16_bn"])
@pytest.mark.parametrize("granularity", ["channel", "filter"])
def test_compact_matches_masked(arch, granularity):
    masked = _masked(arch, granularity)
    compact = compact_model(masked)
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), masked(x), rtol=0, atol=1e-5)
    rep = compare(masked, compact)
    assert rep["params_compact"] < 0.6 * rep["params_masked"]
    assert rep["macs_compact"] < 0.6 * rep["macs_masked"]
    folded = sum(isinstance(m, BiasMapConv) for m in compact.modules())
    assert (folded > 0) == (granularity == "filter")  # constants of pruned filters folded exactly


@pytest.mark.parametrize("arch,side", [("resnet18_imagenet", 64), ("resnet50_imagenet", 64), ("wrn28_4", 32)])
@pytest.mark.parametrize("granularity", ["channel", "filter"])
def test_compact_matches_masked_imagenet_and_wrn(arch, side, granularity):
    masked = _masked(arch, granularity)
    compact = compact_model(masked, input_size=(3, side, side))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        torch.testing.assert_close(compact(x), masked(x), rtol=0, atol=1e-5)
    rep = compare(masked, compact, input_size=(3, side, side))
    # Residual streams keep their width, so less shrinks than in VGG; the blocks' insides still halve.
    assert rep["params_compact"] < 0.8 * rep["params_masked"]
    assert rep["macs_compact"] < 0.8 * rep["macs_masked"]


def test_filter_fold_is_resolution_bound():
    compact = compact_model(_masked("resnet20s", "filter"))
    with pytest.raises(ValueError, match="export again"):
        compact(torch.randn(1, 3, 16, 16))
    channel = compact_model(_masked("resnet20s", "channel"))
    assert channel(torch.randn(1, 3, 16, 16)).shape == (1, 10)  # nothing folded: any resolution


def test_resnet_keeps_residual_width():
    compact = compact_model(_masked("resnet20s", "channel"))
    block = compact.layers[1][0]
    assert block.conv2.out_channels == 32 and block.bn2.num_features == 32
    assert block.conv1.layer.out_channels == 16  # internal width halved (InputSelect wraps conv1)


def test_unstructured_rejected():
    with pytest.raises(ValueError, match="filter- or channel"):
        compact_model(_masked("resnet20s", "unstructured"))


def test_cli_roundtrip(tmp_path):
    from launcher.compact import main
    masked = _masked("resnet20s", "channel")
    meta = {"arch": "resnet20s", "num_classes": 10, "layer_type": "channel", "k": 0.5, "dataset": "x"}
    torch.save({"model": masked.state_dict(), "meta": meta}, tmp_path / "final.pt")
    out = tmp_path / "compact.pt2"
    assert main([str(tmp_path / "final.pt"), "--out", str(out), "--batch", "4", "--reps", "2"]) == 0
    loaded = torch.export.load(str(out)).module()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), masked(x), rtol=0, atol=1e-5)
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["params_compact"] < rep["params_masked"] and "batch4" in rep["latency"]
