"""Sharded checkpoint -> one plain model state_dict, in a single process with no process group.

Every tensor of our checkpoints is replicated or keyed by rank, so DCP's reader, run with `no_dist`, can
assemble the whole model from the shards of any world size. The result keeps scores and masks (it is the
prunable model's state_dict); bip_dist.export folds the masks into the weights for deployment.
"""

from pathlib import Path

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.io import load_checkpoint
from bip_dist.checkpoint.layout import EXTRA, Layout, is_complete


def resolve(path):
    """A checkpoint folder or file as given; a run folder means its final.pt, else its newest checkpoint."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such checkpoint")
    if p.is_file() or is_complete(p):
        return p
    if (p / "final.pt").is_file():
        return p / "final.pt"
    for root in (p / "checkpoints", p):
        newest = Layout(root).newest() if root.is_dir() else None
        if newest is not None:
            return newest
    raise ValueError(f"{p}: holds no complete checkpoint")


def consolidate(path):
    """The model state_dict (weights, scores, masks, rank 0's BatchNorm statistics) of the checkpoint at
    `path`: a sharded folder, a single-file checkpoint (final.pt), or a run folder (its newest)."""
    p = resolve(path)
    if p.is_file():
        ck = load_checkpoint(p)
        return ck["model"] if isinstance(ck, dict) and "model" in ck else ck
    if not is_complete(p):
        raise ValueError(f"{p}: not a complete checkpoint folder (no .metadata or {EXTRA})")
    keys = [k for k in dcp_io.entries(p) if k.startswith("model.")]
    return {k[len("model."):]: v for k, v in dcp_io.load_flat(p, keys).items()}


def read_meta(path):
    """The run description (`meta`: arch, dataset, classes, layer type, k, ...) stored with a checkpoint."""
    p = resolve(path)
    ck = load_checkpoint(p / EXTRA if p.is_dir() else p)
    return ck.get("meta", {}) if isinstance(ck, dict) else {}
