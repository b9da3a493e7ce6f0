"""bip-dist: distributed BiP (bi-level optimization pruning) and its baselines."""

__version__ = "0.1.0"
