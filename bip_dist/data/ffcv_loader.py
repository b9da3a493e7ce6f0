"""FFCV pipelines with the shared presets; the batch order comes from our TrainOrder / EvalOrder.

CPU: decoding and augmentation in FFCV's compiled threads, batches as uint8 NCHW tensors.
CUDA: ToDevice + ToTorchImage put the uint8 batch on the GPU, where BatchNormalize runs.
"""

import numpy as np
import torch

from bip_dist.data.presets import is_imagenet_like, pad_for


def _order(flat_order):
    """Adapter from our order to FFCV's TraversalOrder. FFCV 1.0.2 checks isinstance(order, TraversalOrder)
    and then calls it with the loader, so the instance returns itself."""
    from ffcv.traversal_order.base import TraversalOrder

    class _Order(TraversalOrder):
        def __init__(self):  # no loader needed: indices come from flat_order
            self.sampler = None

        def __call__(self, loader):
            return self

        def sample_order(self, epoch):
            return np.asarray(flat_order(), dtype=np.uint64)  # FFCV's index dtype

    return _Order()


def _pipelines(dataset, size, train, augment, device):
    from ffcv.fields.decoders import (CenterCropRGBImageDecoder, IntDecoder, RandomResizedCropRGBImageDecoder,
                                      SimpleRGBImageDecoder)
    from ffcv.transforms import RandomHorizontalFlip, RandomTranslate, Squeeze, ToDevice, ToTensor, ToTorchImage

    if is_imagenet_like(dataset):
        if train and augment:
            image = [RandomResizedCropRGBImageDecoder((size, size)), RandomHorizontalFlip()]
        else:
            image = [CenterCropRGBImageDecoder((size, size), ratio=224 / 256)]
    else:
        image = [SimpleRGBImageDecoder()]
        if train and augment:
            image += [RandomTranslate(padding=pad_for(dataset)), RandomHorizontalFlip()]
    image.append(ToTensor())
    label = [IntDecoder(), ToTensor(), Squeeze(1)]
    if device.startswith("cuda"):
        image += [ToDevice(torch.device(device), non_blocking=True), ToTorchImage()]
        label.append(ToDevice(torch.device(device), non_blocking=True))
    else:
        image.append(ToTorchImage(channels_last=False))
    return {"image": image, "label": label}


class _KeepTorchThreads:
    """FFCV 1.0.2 sets torch's intra-op thread count to its own worker count on import, when a Loader is
    built and at every epoch start (`Compiler.set_num_threads`): a CPU run with `data.workers: 1` would
    train on one core. This puts the caller's count back after each of those."""

    def __init__(self, loader, threads):
        self.loader, self.threads = loader, threads

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        it = iter(self.loader)
        torch.set_num_threads(self.threads)
        return it


def ffcv_loader(path, *, dataset, size, train, augment, batch_size, workers, flat_order, n_indices, device,
                seed=0):
    """An ffcv.loader.Loader over `path` reading the indices `flat_order()` returns, in that order, in
    consecutive batches of `batch_size` (the last one may be short)."""
    threads = torch.get_num_threads()
    from ffcv.loader import Loader

    loader = Loader(str(path), batch_size=batch_size, num_workers=max(1, workers), order=_order(flat_order),
                    indices=np.arange(n_indices), pipelines=_pipelines(dataset, size, train, augment, device),
                    drop_last=False, os_cache=True, distributed=False, seed=seed, batches_ahead=2)
    torch.set_num_threads(threads)
    return _KeepTorchThreads(loader, threads)
