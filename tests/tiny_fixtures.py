"""The tiny model and learnable in-memory data that the end-to-end tests train in seconds."""

import torch
import torch.nn as nn

SIZE, CLASSES = 8, 4


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


def make_data(n, seed):
    """Images whose mean colour channel encodes the class: learnable in a few steps."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    x = 0.5 * torch.randn(n, 3, SIZE, SIZE, generator=g)
    x[:, 0] += (y.float() - 1.5)[:, None, None]
    return x, y
