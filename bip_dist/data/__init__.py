"""Training data: DataConfig, build_loaders (FFCV / LMDB / image folder / in-RAM), presets, samplers."""

from bip_dist.data.config import DataConfig
from bip_dist.data.loaders import Loaders, build_loaders

__all__ = ["DataConfig", "Loaders", "build_loaders"]
