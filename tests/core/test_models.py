"""Every registered model builds, runs forward/backward, and is prunable at every granularity."""

import pytest
import torch

from bip_dist.models import MODELS, build_model
from bip_dist.pruning import make_prunable, prunable_layers


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_forward_backward(arch):
    torch.manual_seed(0)
    model = build_model(arch, 7)
    x = torch.randn(2, 3, 32, 32)
    out = model(x)
    assert out.shape == (2, 7)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unknown_model_lists_valid():
    with pytest.raises(ValueError, match="unknown model 'resnet99'; valid: .*resnet20s"):
        build_model("resnet99", 10)


@pytest.mark.parametrize("granularity", ["unstructured", "filter", "channel"])
def test_prunable_model_matches_dense_with_full_mask(granularity):
    torch.manual_seed(0)
    dense = build_model("resnet20s", 10).eval()
    pruned = make_prunable(build_model("resnet20s", 10), granularity).eval()
    pruned.load_state_dict(dense.state_dict(), strict=False)
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(pruned(x), dense(x))
    n_conv = sum(isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)) for m in dense.modules())
    assert len(prunable_layers(pruned)) == n_conv
