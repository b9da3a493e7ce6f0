"""torchvision's ImageNet ResNets (7x7 stem + max-pool), the reference's `ResNet18` / `ResNet50`."""

import torchvision

from bip_dist.models.registry import register


@register("resnet18_imagenet")
def resnet18_imagenet(num_classes):
    return torchvision.models.resnet18(num_classes=num_classes)


@register("resnet50_imagenet")
def resnet50_imagenet(num_classes):
    return torchvision.models.resnet50(num_classes=num_classes)
