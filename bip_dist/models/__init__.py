"""Model registry: every architecture is built by name through `build_model`."""

from bip_dist.models.registry import MODELS, build_model, register

# Importing the modules registers their models.
from bip_dist.models import resnet_cifar, vgg, wrn, imagenet  # noqa: F401,E402

__all__ = ["MODELS", "build_model", "register"]
