"""Physically removing channels from plain conv / BatchNorm / linear layers, exactly (eval mode).

A channel j between producer conv P (-> BN -> ReLU -> [pool]) and consumer C can be removed when
- C ignores it (all of C's weights on input j are zero: a channel-pruned C), or
- P's filter j is all zeros (a filter-pruned P). Then the channel is not zero but the constant
  c_j = relu(BN(bias_j or 0)), which C still sees. Removing it exactly means adding what C made of it:
  after global average pooling (a linear C) that is c_j * W[:, j] on C's bias; for a padded convolution it
  depends on the position (border taps see padding), so it becomes a fixed bias *map* of C's output size
  (BiasMapConv), valid for the input resolution it was computed at.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def zero_rows(conv):
    """Bool per output filter: all of its weights are zero (a pruned filter)."""
    return conv.weight.detach().flatten(1).abs().sum(1) == 0


def unused_inputs(layer):
    """Bool per input channel / feature: all weights reading it are zero (a pruned channel)."""
    w = layer.weight.detach()
    return w.transpose(0, 1).flatten(1).abs().sum(1) == 0


def slice_conv(conv, out_idx=None, in_idx=None):
    """A new Conv2d holding only the filters `out_idx` and input channels `in_idx` (None = all)."""
    w = conv.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Conv2d(w.shape[1] * conv.groups, w.shape[0], conv.kernel_size, conv.stride, conv.padding,
                    conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                    device=w.device, dtype=w.dtype)
    new.weight.data.copy_(w)
    if conv.bias is not None:
        new.bias.data.copy_(conv.bias.detach() if out_idx is None else conv.bias.detach()[out_idx])
    return new


def slice_bn(bn, idx):
    """A new BatchNorm2d for channels `idx` (affine parameters and running statistics)."""
    new = nn.BatchNorm2d(len(idx), bn.eps, bn.momentum, bn.affine, bn.track_running_stats,
                         device=bn.running_mean.device, dtype=bn.running_mean.dtype)
    with torch.no_grad():
        if bn.affine:
            new.weight.copy_(bn.weight[idx])
            new.bias.copy_(bn.bias[idx])
        new.running_mean.copy_(bn.running_mean[idx])
        new.running_var.copy_(bn.running_var[idx])
        new.num_batches_tracked.copy_(bn.num_batches_tracked)
    return new


def slice_linear(fc, in_idx):
    """A new Linear reading only the features `in_idx`."""
    new = nn.Linear(len(in_idx), fc.out_features, fc.bias is not None, device=fc.weight.device,
                    dtype=fc.weight.dtype)
    with torch.no_grad():
        new.weight.copy_(fc.weight[:, in_idx])
        if fc.bias is not None:
            new.bias.copy_(fc.bias)
    return new


@torch.no_grad()
def dead_constants(conv, bn, idx):
    """Eval-mode value relu(BN(bias)) of the constant channels `idx` a zero filter leaves behind."""
    b = conv.bias[idx] if conv.bias is not None else torch.zeros(len(idx), device=bn.running_mean.device)
    y = (b - bn.running_mean[idx]) / torch.sqrt(bn.running_var[idx] + bn.eps)
    if bn.affine:
        y = y * bn.weight[idx] + bn.bias[idx]
    return F.relu(y)


class BiasMapConv(nn.Module):
    """conv(x) + a fixed map: the exact contribution of removed constant input channels."""

    def __init__(self, conv, bias_map):
        super().__init__()
        self.conv = conv
        self.register_buffer("bias_map", bias_map)

    def forward(self, x):
        out = self.conv(x)
        if out.shape[-2:] != self.bias_map.shape[-2:]:
            raise ValueError(f"compact model was exported for {tuple(self.bias_map.shape[-2:])} feature maps "
                             f"here, got {tuple(out.shape[-2:])}: export again with the new input size")
        return out + self.bias_map


class InputSelect(nn.Module):
    """layer(x[:, idx]): a consumer that ignores channels it cannot remove from its producer (a residual
    stream, the image) reads only the ones it uses."""

    def __init__(self, layer, idx):
        super().__init__()
        self.layer = layer
        self.register_buffer("idx", idx)

    def forward(self, x):
        return self.layer(x.index_select(1, self.idx))


def shrink_between(prod, bn, cons, cons_in_hw=None):
    """Remove the channels between producer conv `prod` (+ `bn`) and consumer `cons` (Conv2d or Linear
    after global pooling) that are dead or unused. `cons_in_hw` is the consumer's input size, needed only
    when a constant channel must be folded into a conv. Returns (prod, bn, cons) replacements."""
    unused = unused_inputs(cons)
    bias_map = None
    if isinstance(prod, BiasMapConv):  # a producer that is itself the consumer of folded constants
        prod, bias_map = prod.conv, prod.bias_map
    dead = zero_rows(prod)  # with a bias the channel is a constant too: folded like the rest
    if bias_map is not None:  # ...but not when a bias map makes it vary with position
        dead &= bias_map[0].flatten(1).abs().sum(1) == 0
    drop = unused | dead
    if drop.all():  # keep one channel so every layer stays well-formed
        drop[0] = False
    keep = torch.nonzero(~drop).flatten()
    fold = torch.nonzero(dead & ~unused & drop).flatten()
    consts = dead_constants(prod, bn, fold) if len(fold) else None
    new_prod, new_bn = slice_conv(prod, out_idx=keep), slice_bn(bn, keep)
    if bias_map is not None:
        new_prod = BiasMapConv(new_prod, bias_map[:, keep].clone())
    if isinstance(cons, nn.Linear):
        new_cons = slice_linear(cons, keep)
        if consts is not None:
            with torch.no_grad():
                extra = cons.weight[:, fold] @ consts
                if new_cons.bias is None:
                    new_cons.bias = nn.Parameter(extra)
                else:
                    new_cons.bias.add_(extra)
        return new_prod, new_bn, new_cons
    new_cons = slice_conv(cons, in_idx=keep)
    if consts is not None and bool((consts != 0).any()):
        if cons_in_hw is None:
            raise ValueError("a filter-pruned channel feeds a convolution: give the input size to fold it")
        img = consts.view(1, -1, 1, 1).expand(1, len(fold), *cons_in_hw).contiguous()
        with torch.no_grad():
            bias_map = F.conv2d(img, cons.weight[:, fold], None, cons.stride, cons.padding, cons.dilation)
        new_cons = BiasMapConv(new_cons, bias_map)
    return new_prod, new_bn, new_cons


def select_inputs(layer):
    """Wrap a conv / linear whose input width cannot shrink so it reads only the channels it uses."""
    unused = unused_inputs(layer)
    if not unused.any() or unused.all():
        return layer
    idx = torch.nonzero(~unused).flatten()
    new = slice_conv(layer, in_idx=idx) if isinstance(layer, nn.Conv2d) else slice_linear(layer, idx)
    return InputSelect(new, idx)
