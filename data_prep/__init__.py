"""Dataset conversion for bip-dist: readers of ImageNet / Tiny-ImageNet / CIFAR / folder / digits sources,
resumable LMDB, FFCV and in-RAM .npz writers, and `verify`. CLI: `python -m data_prep --help`."""
