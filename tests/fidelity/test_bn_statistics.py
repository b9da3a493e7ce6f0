"""Fact 6 of docs/fidelity.md: BatchNorm running statistics move once per training-mode forward.

The reference's BiP iteration runs four forwards (B_theta; B_m twice; B_m again to log accuracy), the fused
step two; `bip.fused: false` (set by the reference presets) runs the reference's four. Weights, scores and
masks do not depend on it: both give the same trajectory.
"""

import pytest
import torch

from bip_dist.engine import LocalEngine
from bip_dist.train.build import build_parts
from tests.helpers.fidelity import batches, preset
from tests.helpers.models import CLASSES, registered

ITERS = 3


def _run(fused):
    parts = build_parts(preset("bip", f"bip.fused={str(fused).lower()}"), LocalEngine(), CLASSES)
    parts.step.set_lrs(0.1, 0.1)
    for batch in batches(True)[:ITERS]:
        parts.step(batch)
    return parts.model


@pytest.fixture(scope="module")
def models():
    with registered():  # a module-wide fixture runs outside any test's tiny_models
        return {fused: _run(fused) for fused in (True, False)}


@pytest.mark.parametrize("fused, forwards", [(True, 2), (False, 4)])
def test_forwards_per_iteration(models, fused, forwards):
    assert int(models[fused].bn1.num_batches_tracked) == forwards * ITERS


def test_same_trajectory_either_way(models):
    a, b = models[True], models[False]
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    masks = [(n, m) for n, m in a.named_buffers() if n.endswith(".mask")]
    assert masks and all(torch.equal(m, b.get_buffer(n)) for n, m in masks)
    assert not torch.equal(a.bn1.running_mean, b.bn1.running_mean)
