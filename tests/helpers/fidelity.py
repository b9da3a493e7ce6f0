"""The reference presets on the tiny model, tiny random batches, and the reference network holding the same
initial weights as a bip-dist model."""

from bip_dist.config import load_config
from tests.helpers import ROOT
from tests.helpers import reference_loop as R
from tests.helpers.data import random_batches
from tests.helpers.models import CLASSES, TinyNet

ITERS = 5


def preset(kind, *extra):
    """configs/digits/<kind>_reference.yaml on the tiny model, one iteration per epoch."""
    return load_config(ROOT / "configs" / "digits" / f"{kind}_reference.yaml",
                       ["model.arch=tinynet", "source_net=", "prune.from_scratch=true", "data.batch_size=8",
                        f"train.epochs={ITERS}", *extra])


def batches(two_streams):
    """ITERS batches of 8 images (pairs of batches for BiP)."""
    return random_batches(ITERS, CLASSES, two_streams)


def reference_twin(model, k):
    """The reference's network holding the same weights as bip-dist's `model` (before any step)."""
    dense = TinyNet(CLASSES)
    dense.load_state_dict({n: v for n, v in model.state_dict().items() if not n.endswith((".scores", ".mask"))})
    return R.ReferenceNet(dense, k)
