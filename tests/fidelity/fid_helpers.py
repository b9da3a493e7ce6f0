"""Shared pieces of the fidelity tests: the reference presets on a tiny model, tiny random batches, and
the reference network holding the same initial weights as a bip-dist model."""

import os
import sys
from pathlib import Path

import torch

from bip_dist.config import load_config
from bip_dist.models.registry import MODELS, register

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_loop as R  # noqa: E402
from tiny_fixtures import CLASSES, SIZE, TinyNet  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ITERS = 5
if "fidnet" not in MODELS:
    register("fidnet")(TinyNet)


def preset(kind, *extra):
    """configs/digits/<kind>_reference.yaml on the tiny model, one iteration per epoch."""
    return load_config(ROOT / "configs" / "digits" / f"{kind}_reference.yaml",
                       ["model.arch=fidnet", "source_net=", "prune.from_scratch=true", "data.batch_size=8",
                        f"train.epochs={ITERS}", *extra])


def batches(two_streams, seed=1):
    """ITERS batches of 8 images (pairs of batches for BiP)."""
    g = torch.Generator().manual_seed(seed)

    def one():
        return torch.randn(8, 3, SIZE, SIZE, generator=g), torch.randint(0, CLASSES, (8,), generator=g)
    return [(one(), one()) if two_streams else one() for _ in range(ITERS)]


def reference_twin(model, k):
    """The reference's network holding the same weights as bip-dist's `model` (before any step)."""
    dense = TinyNet(CLASSES)
    dense.load_state_dict({n: v for n, v in model.state_dict().items() if not n.endswith((".scores", ".mask"))})
    return R.ReferenceNet(dense, k)
