"""Augmentation presets shared by every storage format, so a run's data pipeline does not depend on
whether images come from FFCV, LMDB, an image folder or RAM.

Per-sample transforms stop at a uint8 CHW tensor; scaling to [0, 1] and normalisation happen once per
batch in `BatchNormalize` (on the training device), which keeps worker->trainer traffic 4x smaller.
"""

import torch
from torchvision.transforms import v2

# Per-channel mean / std in [0, 1] units of each dataset's training images.
MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "tiny_imagenet": ((0.4802, 0.4481, 0.3975), (0.2770, 0.2691, 0.2821)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "folder": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # Measured on the 1,497 training images written by `python -m data_prep digits` (32x32, bilinear).
    "digits": ((0.3048, 0.3048, 0.3048), (0.3235, 0.3235, 0.3235)),
    # All 60,000 Fashion-MNIST training images (grey, so the three channels are equal).
    "fashion_mnist": ((0.2860, 0.2860, 0.2860), (0.3530, 0.3530, 0.3530)),
}
NUM_CLASSES = {"cifar10": 10, "cifar100": 100, "tiny_imagenet": 200, "imagenet": 1000, "digits": 10,
               "fashion_mnist": 10}
# Random-crop padding of the small-dataset preset. Fashion-MNIST's product photos were trimmed and scaled so
# that their longer side spans the whole 28-pixel frame: a 4-pixel shift (1/7 of it) cuts off sleeves and
# soles, 2 pixels still varies the position. A mirrored garment is the same garment, so flips stay.
PAD = {"fashion_mnist": 2}


def pad_for(dataset):
    """Random-crop padding (pixels) of `dataset`'s training preset."""
    return PAD.get(dataset, 4)


def is_imagenet_like(dataset):
    """ImageNet and arbitrary folders use the RandomResizedCrop recipe; small datasets use pad-4 crops."""
    return dataset in ("imagenet", "folder")


def train_transform(dataset, size, augment=True):
    """Per-sample training transform (PIL image or uint8 tensor in, uint8 CHW tensor out).

    ImageNet-like: RandomResizedCrop(size) + horizontal flip. CIFAR / Tiny / digits: pad-4 random crop +
    flip; Fashion-MNIST: pad-2 (pad_for). Without `augment`, the validation transform is used, so the two differ only in randomness.
    """
    if not augment:
        return val_transform(dataset, size)
    if is_imagenet_like(dataset):
        ops = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        ops = [v2.RandomCrop(size, padding=pad_for(dataset)), v2.RandomHorizontalFlip()]
    return v2.Compose([v2.ToImage(), *ops, v2.ToDtype(torch.uint8)])


def val_transform(dataset, size):
    """Deterministic evaluation transform: Resize(size*256/224) + CenterCrop(size) for ImageNet-like
    data, identity (plus a resize when size differs from the stored side) for small datasets."""
    if is_imagenet_like(dataset):
        ops = [v2.Resize(int(round(size * 256 / 224)), antialias=True), v2.CenterCrop(size)]
    else:
        ops = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]
    return v2.Compose([v2.ToImage(), *ops, v2.ToDtype(torch.uint8)])


class BatchNormalize:
    """uint8 NCHW batch -> float32 in [0, 1], then (x - mean) / std when `normalize` (on x's device)."""

    def __init__(self, dataset, normalize=True):
        mean, std = MEAN_STD.get(dataset, MEAN_STD["imagenet"])
        self.normalize = normalize
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)

    def __call__(self, x):
        x = x.float().div_(255.0)
        if self.normalize:
            x = x.sub_(self.mean.to(x.device)).div_(self.std.to(x.device))
        return x.contiguous()


def batch_pad_crop_flip(x, gen, size, pad=4):
    """The small-dataset preset (pad-`pad` random crop + flip) on a whole uint8 NCHW batch at once, for
    the in-RAM loader; `gen` makes it reproducible per step."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, h + 2 * pad - size + 1, (n,), generator=gen)
    dx = torch.randint(0, w + 2 * pad - size + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    steps = torch.arange(size)
    rows = dy[:, None] + steps                                          # n x size
    cols = dx[:, None] + torch.where(flip[:, None], size - 1 - steps, steps)  # a flip reads columns backwards
    chans = torch.arange(x.shape[1])
    return padded[torch.arange(n)[:, None, None, None], chans[None, :, None, None], rows[:, None, :, None],
                  cols[:, None, None, :]]
