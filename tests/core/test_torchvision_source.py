"""A torchvision ImageNet ResNet state_dict (the format of published pretrained weights) is a valid
`source_net`: BiP starts from it without conversion."""

import math
from pathlib import Path

import torch
import torchvision

from bip_dist.config import load_config
from bip_dist.engine import LocalEngine
from bip_dist.train.build import build_parts

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "imagenet" / "bip.yaml"


def test_torchvision_resnet50_state_dict_starts_bip(tmp_path):
    torch.manual_seed(1)
    src = torchvision.models.resnet50(weights=None).state_dict()  # random init: no download
    path = tmp_path / "resnet50_torchvision.pt"
    torch.save(src, path)
    cfg = load_config(CONFIG, [f"source_net={path}", "prune.k=0.5"])
    parts = build_parts(cfg, LocalEngine(), num_classes=1000)

    own = parts.model.state_dict()
    for key, value in src.items():
        assert torch.equal(own[key], value), key
    # magnitude scores come from the loaded weights, so the mask ranks the published weights
    w = src["conv1.weight"]
    bound = math.sqrt(6.0 / w[0].numel())
    torch.testing.assert_close(parts.model.conv1.scores, bound * w.abs() / w.abs().max())
    assert abs(parts.store.sparsity() - 0.5) < 1e-3
