"""DataConfig: the `data:` section of an experiment config (what to load, from where, how)."""

from dataclasses import dataclass

from bip_dist.fields import check_fields, opt

DATASETS = ("cifar10", "cifar100", "tiny_imagenet", "imagenet", "digits", "fashion_mnist", "folder")
FORMATS = ("ffcv", "lmdb", "folder", "memory")
# Native training resolution of each dataset; image_size = 0 picks it.
DEFAULT_SIZE = {"cifar10": 32, "cifar100": 32, "digits": 32, "fashion_mnist": 28, "tiny_imagenet": 64,
                "imagenet": 224, "folder": 224}


@dataclass(frozen=True)
class DataConfig:
    dataset: str = opt("cifar10", "dataset name; picks class count, image size, mean/std and the "
                       "augmentation preset", choices=DATASETS)
    format: str = opt("memory", "storage written by `python -m data_prep`: ffcv (.beton), lmdb (.lmdb), "
                      "memory (train.npz/val.npz held in RAM), folder (class-per-folder JPEG tree)",
                      choices=FORMATS)
    root: str = opt("data/cifar10", "folder holding the prepared files (train_*/val_* named by their settings, "
                    "or train/ and val/ class folders for format=folder)")
    train_file: str = opt("", "explicit training file or folder; empty = the single matching file in root")
    val_file: str = opt("", "explicit validation file or folder; empty = the single matching file in root")
    batch_size: int = opt(128, "images per rank and per stream in each training step (BiP draws two such "
                          "batches per step)", min=1)
    val_batch_size: int = opt(0, "images per rank in each evaluation batch; 0 = 2 x batch_size", min=0)
    workers: int = opt(4, "loader worker processes per rank (0 = load in the training process)", min=0)
    image_size: int = opt(0, "training crop side in pixels; 0 = the dataset's native size (32 CIFAR/digits, "
                          "28 Fashion-MNIST, 64 Tiny-ImageNet, 224 ImageNet)", min=0)
    normalize: bool = opt(True, "subtract the dataset mean and divide by its std, per channel")
    augment: bool = opt(True, "random crop + horizontal flip on training images (ImageNet: "
                        "RandomResizedCrop; Fashion-MNIST: pad-2 random crop; others: pad-4 random crop)")
    holdout: int = opt(0, "training images held out as a selection split (stratified by class, chosen by "
                       "holdout_seed), left out of training and evaluated beside val as holdout_top1 / "
                       "holdout_loss; 0 = none", min=0)
    holdout_seed: int = opt(0, "seed of the holdout and subset choice; independent of the run seed, so every "
                            "method and seed of a sweep is selected on the same images", min=0)
    subset: int = opt(0, "train on this many of the training images left after the holdout (stratified, "
                      "chosen by holdout_seed); 0 = all of them", min=0)
    drop_last: bool = opt(True, "drop the last incomplete training batch, so every step sees full batches")
    pin_memory: bool = opt(True, "pin host memory of loader batches when training on CUDA, for faster "
                           "copies to the GPU (formats lmdb and folder; ffcv moves its batches itself)")
    skip_bad: bool = opt(False, "lmdb / folder: a sample that does not decode is replaced by the next "
                         "readable one and reported once on stderr; false = stop with a line naming it")
    check_images: bool = opt(False, "lmdb / folder: decode every train and val image at start-up (with "
                             "`workers` processes, on every rank) and stop with one line per unreadable "
                             "file; with skip_bad they are listed and left out instead")

    def validate(self):
        """Raise ValueError with a one-line message naming the key and value of the first bad setting
        (the declared checks of each field, then the settings that only fail together)."""
        check_fields(self, "data.")
        if not self.root and not (self.train_file and self.val_file):
            raise ValueError("data.root = '' needs data.train_file and data.val_file")
        if self.format == "memory" and self.dataset == "imagenet":
            raise ValueError("data.format = 'memory' cannot hold imagenet; use ffcv or lmdb")

    @property
    def size(self):
        """The training crop side: image_size or the dataset's native size."""
        return self.image_size or DEFAULT_SIZE[self.dataset]
