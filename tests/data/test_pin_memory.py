"""data.pin_memory reaches the DataLoaders, and only pins when the batches go to a GPU."""

import numpy as np
import pytest
import torch

from bip_dist.data import DataConfig, build_loaders


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    from PIL import Image
    root = tmp_path_factory.mktemp("pin")
    for split in ("train", "val"):
        for k in range(4):
            path = root / split / f"c{k % 2}" / f"{k}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((8, 8, 3), 40 * k, dtype=np.uint8)).save(path)
    return str(root)


@pytest.mark.parametrize("pin,device,want", [(True, "cuda:0", True), (False, "cuda:0", False),
                                             (True, "cpu", False)])
def test_pin_memory_setting_reaches_the_dataloaders(folder, monkeypatch, pin, device, want):
    seen = []
    real = torch.utils.data.DataLoader

    def spy(*args, **kwargs):
        seen.append(kwargs["pin_memory"])
        return real(*args, **{**kwargs, "pin_memory": False})  # this machine may have no GPU

    monkeypatch.setattr(torch.utils.data, "DataLoader", spy)
    cfg = DataConfig(dataset="folder", format="folder", root=folder, batch_size=2, workers=0, image_size=8,
                     pin_memory=pin)
    build_loaders(cfg, device=device)
    assert seen == [want, want]  # training and validation loader
