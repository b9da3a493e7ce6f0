"""The tiny test networks, and their registration in bip_dist's model registry for one test only, so
that no test (nor the registry-wide model tests) depends on which test modules ran or were imported before.

Tests that build a model by name use the `tiny_models` fixture (tests/conftest.py); a worker process that
builds one registers it itself with `registered()` (a forked child inherits the parent's registry)."""

import contextlib

import torch
import torch.nn as nn

from bip_dist.models.registry import MODELS

SIZE, CLASSES = 8, 4  # image side and classes of the learnable in-memory data (helpers.data)


class TinyNet(nn.Module):
    """conv-BN-ReLU-conv-BN-ReLU-pool-linear: every kind of layer the pruning code handles, and per-rank
    BatchNorm statistics."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def tiny_net(num_classes=10):
    """Conv-ReLU-Conv-ReLU-pool-Linear: no BatchNorm, so per-rank statistics cannot make 2 ranks differ
    from 1 process."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, num_classes))


# model.arch name -> constructor, as bip_dist.models.registry.register would record it
TEST_MODELS = {"tinynet": TinyNet, "tinynet_nobn": tiny_net}


@contextlib.contextmanager
def registered():
    """The test models are buildable by name inside the block and gone after it. Names already present
    (an enclosing block, or a parent the process was forked from) are left to their owner."""
    added = [name for name in TEST_MODELS if name not in MODELS]
    MODELS.update({name: TEST_MODELS[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            MODELS.pop(name, None)
