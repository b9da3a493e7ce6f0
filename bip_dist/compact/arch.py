"""Compaction of the registry's CIFAR ResNets (BasicBlock) and VGG, from a plain model whose pruned
filters / channels are zero weights (bip_dist.export.plain_state_dict of a filter- or channel-pruned run).

What shrinks:
- ResNet: only each block's internal width (conv1 filters = bn1 = conv2 inputs). The residual stream
  (stem output, conv2 outputs, shortcut outputs) is added across blocks, so a channel of it can only go if
  every block agreed; we keep its width. Consumers of the stream (block conv1, projection shortcut, fc)
  and the stem (image channels) read only the input channels they use (InputSelect).
- VGG: every conv's output width (its consumer is the next conv or the classifier), and the first conv's
  image channels.
"""

import copy

import torch
import torch.nn as nn

from bip_dist.compact.slicing import select_inputs, shrink_between
from bip_dist.models.resnet_cifar import BasicBlock, CifarResNet
from bip_dist.models.vgg import VGG


def _input_sizes(model, example):
    """Spatial size of every conv's input for `example` (for folding constants into convolutions)."""
    sizes, hooks = {}, []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            hooks.append(m.register_forward_hook(lambda mod, inp, out: sizes.__setitem__(mod, inp[0].shape[-2:])))
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    return sizes


def _compact_resnet(model, sizes):
    model.conv1 = select_inputs(model.conv1)
    for block in model.modules():
        if not isinstance(block, BasicBlock):
            continue
        block.conv1, block.bn1, block.conv2 = shrink_between(block.conv1, block.bn1, block.conv2,
                                                             sizes[block.conv2])
        block.conv1 = select_inputs(block.conv1)
        if len(block.shortcut):
            block.shortcut[0] = select_inputs(block.shortcut[0])
    model.fc = select_inputs(model.fc)
    return model


def _compact_vgg(model, sizes):
    feats = model.features
    convs = [i for i, m in enumerate(feats) if isinstance(m, nn.Conv2d)]
    for a, b in zip(convs, convs[1:] + [None]):
        prod, bn = feats[a], feats[a + 1]
        cons = feats[b] if b is not None else model.classifier
        hw = sizes.get(cons) if b is not None else None
        prod, bn, cons = shrink_between(prod, bn, cons, hw)
        feats[a], feats[a + 1] = prod, bn
        if b is not None:
            feats[b] = cons
        else:
            model.classifier = cons
    feats[convs[0]] = select_inputs(feats[convs[0]])
    return model


def compact_plain(model, input_size=(3, 32, 32)):
    """A physically smaller copy of plain `model` (eval mode) giving the same outputs. Supports
    CifarResNet (resnet20s / resnet56s / resnet18) and VGG (vgg16_bn)."""
    model = copy.deepcopy(model).eval()
    example = torch.zeros(1, *input_size, device=next(model.parameters()).device)
    sizes = _input_sizes(model, example)
    if isinstance(model, CifarResNet):
        return _compact_resnet(model, sizes).eval()
    if isinstance(model, VGG):
        return _compact_vgg(model, sizes).eval()
    raise NotImplementedError(f"compact export supports the CIFAR ResNets and VGG, not {type(model).__name__}")
