"""Compaction of every model of the registry, from a plain model whose pruned filters / channels are zero
weights (bip_dist.export.plain_state_dict of a filter- or channel-pruned run).

What shrinks:
- ResNets (CIFAR, torchvision ImageNet BasicBlock / Bottleneck, pre-activation WRN): only each block's
  internal widths (conv1 filters = conv2 inputs; in a Bottleneck also conv2 filters = conv3 inputs). The
  residual stream (stem output, last conv outputs, shortcut outputs) is added across blocks, so a channel
  of it can only go if every block agreed; we keep its width. Consumers of the stream (block conv1,
  projection shortcut, fc) and the stem (image channels) read only the input channels they use
  (InputSelect).
- VGG: every conv's output width (its consumer is the next conv or the classifier), and the first conv's
  image channels.
"""

import copy

import torch
import torch.nn as nn
from torchvision.models.resnet import BasicBlock as TvBasic
from torchvision.models.resnet import Bottleneck as TvBottleneck
from torchvision.models.resnet import ResNet as TvResNet

from bip_dist.compact.slicing import select_inputs, shrink_between
from bip_dist.models.resnet_cifar import BasicBlock, CifarResNet
from bip_dist.models.vgg import VGG
from bip_dist.models.wrn import WideBlock, WideResNet


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


def _compact_tv_resnet(model, sizes):
    model.conv1 = select_inputs(model.conv1)
    for block in model.modules():
        if isinstance(block, (TvBasic, TvBottleneck)):
            # Consumers' input sizes are looked up before any of them is replaced.
            hw2 = sizes[block.conv2]
            hw3 = sizes[block.conv3] if isinstance(block, TvBottleneck) else None
            block.conv1, block.bn1, block.conv2 = shrink_between(block.conv1, block.bn1, block.conv2, hw2)
            if hw3 is not None:
                block.conv2, block.bn2, block.conv3 = shrink_between(block.conv2, block.bn2, block.conv3, hw3)
            block.conv1 = select_inputs(block.conv1)
            if block.downsample is not None:
                block.downsample[0] = select_inputs(block.downsample[0])
    model.fc = select_inputs(model.fc)
    return model


def _compact_wrn(model, sizes):
    # Pre-activation blocks: conv1 -> bn2 -> relu -> conv2 is the internal width; conv1 and the shortcut
    # read relu(bn1(stream)), whose width stays.
    model.conv1 = select_inputs(model.conv1)
    for block in model.modules():
        if isinstance(block, WideBlock):
            block.conv1, block.bn2, block.conv2 = shrink_between(block.conv1, block.bn2, block.conv2,
                                                                 sizes[block.conv2])
            block.conv1 = select_inputs(block.conv1)
            if block.shortcut is not None:
                block.shortcut = select_inputs(block.shortcut)
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
    """A physically smaller copy of plain `model` (eval mode) giving the same outputs. Supports every
    registry model: the CIFAR ResNets, the torchvision ImageNet ResNets, the WRNs and VGG-16-BN."""
    model = copy.deepcopy(model).eval()
    example = torch.zeros(1, *input_size, device=next(model.parameters()).device)
    sizes = _input_sizes(model, example)
    if isinstance(model, CifarResNet):
        return _compact_resnet(model, sizes).eval()
    if isinstance(model, VGG):
        return _compact_vgg(model, sizes).eval()
    if isinstance(model, TvResNet):
        return _compact_tv_resnet(model, sizes).eval()
    if isinstance(model, WideResNet):
        return _compact_wrn(model, sizes).eval()
    raise NotImplementedError(f"compact export supports the registry's ResNets, WRNs and VGG, not "
                              f"{type(model).__name__}")
