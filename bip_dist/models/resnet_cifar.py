"""ResNets for 32x32 inputs: the CIFAR ResNet-20/56 of He et al. and ResNet-18 with a 3x3 stem."""

import torch.nn as nn
import torch.nn.functional as F

from bip_dist.models.registry import register


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            # Projection shortcut (option B) so that every weight is a prunable convolution.
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                          nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem 3x3 conv, len(widths) stages of BasicBlocks, global average pool, linear head."""

    def __init__(self, blocks, widths, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        layers, in_planes = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            stage = []
            for j in range(n):
                stage.append(BasicBlock(in_planes, w, 2 if (i > 0 and j == 0) else 1))
                in_planes = w
            layers.append(nn.Sequential(*stage))
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(in_planes, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)


@register("resnet20s")
def resnet20s(num_classes):
    return CifarResNet([3, 3, 3], [16, 32, 64], num_classes)


@register("resnet56s")
def resnet56s(num_classes):
    return CifarResNet([9, 9, 9], [16, 32, 64], num_classes)


@register("resnet18")
def resnet18(num_classes):
    """ResNet-18 for low-resolution inputs (the reference's `resnet18`, not ImageNet's `ResNet18`)."""
    return CifarResNet([2, 2, 2, 2], [64, 128, 256, 512], num_classes)
