"""The model and its run description from any checkpoint, in a single process with no process group.

Every tensor of our checkpoints is replicated or keyed by rank, so DCP's reader, run with `no_dist`, can
assemble the whole model from the shards of any world size. The result keeps scores and masks (it is the
prunable model's state_dict); bip_dist.export folds the masks into the weights for deployment.
"""

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.finite import assert_finite
from bip_dist.checkpoint.integrity import verify
from bip_dist.checkpoint.io import load_checkpoint
from bip_dist.checkpoint.layout import EXTRA
from bip_dist.checkpoint.paths import locate


def load_model(path):
    """{"model": state_dict, "meta": run description or None, "path": the checkpoint read} of what `path`
    means (checkpoint.locate), after checking its files against their checksums (BadCheckpoint names the
    first bad one) and its tensors for nan / inf (NonFiniteError): a sharded folder is consolidated here;
    a single file holds either a training checkpoint ({"model", "meta", ...}) or a bare state_dict
    (exported or consolidated: meta None)."""
    p = locate(path)
    verify(p)
    src = _read_model(p)
    assert_finite(src["model"], p)  # a diverged model must not be the next stage's start or an export
    return src


def _read_model(p):
    if p.is_dir():
        keys = [k for k in dcp_io.entries(p) if k.startswith("model.")]
        model = {k[len("model."):]: v for k, v in dcp_io.load_flat(p, keys).items()}
        return {"model": model, "meta": load_checkpoint(p / EXTRA).get("meta", {}), "path": p}
    ck = load_checkpoint(p)
    if not isinstance(ck, dict):
        raise ValueError(f"{p}: holds a {type(ck).__name__}, not a model state_dict or checkpoint")
    if "model" in ck:
        return {"model": ck["model"], "meta": ck.get("meta"), "path": p}
    return {"model": ck, "meta": None, "path": p}


def consolidate(path):
    """The model state_dict (weights, scores, masks, rank 0's BatchNorm statistics) of `path`."""
    return load_model(path)["model"]


def read_meta(path):
    """The run description (`meta`: arch, dataset, classes, layer type, k, ...) stored with a checkpoint;
    {} for a bare state_dict."""
    p = locate(path)
    ck = load_checkpoint(p / EXTRA if p.is_dir() else p)
    return ck.get("meta", {}) if isinstance(ck, dict) else {}
