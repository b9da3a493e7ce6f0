"""Checkpoints: atomic files, exact-resume state, and stage hand-over between pretrain/prune/finetune."""

from bip_dist.checkpoint.io import save_atomic, load_checkpoint
from bip_dist.checkpoint.handover import HandoverError, check_handover, load_source_net

__all__ = ["save_atomic", "load_checkpoint", "HandoverError", "check_handover", "load_source_net"]
