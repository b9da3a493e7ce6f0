"""Checkpoints: atomic files and sharded folders with checksums, exact-resume state, stage hand-over,
and one reading of a checkpoint path (`locate`) with one loader of model plus meta (`load_model`)."""

from bip_dist.checkpoint.io import save_atomic, load_checkpoint
from bip_dist.checkpoint.paths import locate
from bip_dist.checkpoint.consolidate import load_model
from bip_dist.checkpoint.handover import HandoverError, check_handover, load_source_net
from bip_dist.checkpoint.integrity import BadCheckpoint, verify

__all__ = ["save_atomic", "load_checkpoint", "locate", "load_model", "HandoverError", "check_handover",
           "load_source_net", "BadCheckpoint", "verify"]
