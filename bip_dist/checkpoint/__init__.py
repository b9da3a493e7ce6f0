"""Checkpoints: atomic files and sharded folders, exact-resume state, stage hand-over, consolidation."""

from bip_dist.checkpoint.io import save_atomic, load_checkpoint
from bip_dist.checkpoint.handover import HandoverError, check_handover, load_source_net

__all__ = ["save_atomic", "load_checkpoint", "HandoverError", "check_handover", "load_source_net"]
