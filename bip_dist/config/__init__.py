"""Experiment configuration: frozen dataclass schema, YAML loading, overrides, run hashing."""

from bip_dist.config.schema import ExperimentConfig
from bip_dist.config.load import ConfigError, load_config, config_to_dict, config_hash

__all__ = ["ExperimentConfig", "ConfigError", "load_config", "config_to_dict", "config_hash"]
