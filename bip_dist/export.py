"""Turn a trained checkpoint into a plain state_dict of the registry's dense model.

Pruned weights are multiplied by their mask (so they are exact zeros) and score / mask tensors dropped,
so `build_model(arch, n).load_state_dict(exported)` works with strict=True and nothing of bip-dist.
"""

import torch

from bip_dist.pruning.report import sparsity_report


def plain_state_dict(state):
    """Fold masks into weights and drop scores/masks from a prunable model's state_dict."""
    out = {}
    for key, t in state.items():
        if key.endswith((".scores", ".mask")):
            continue
        if key.endswith(".weight"):
            mask = state.get(key[:-len("weight")] + "mask")
            if mask is not None:
                t = t * mask.to(t.dtype).expand_as(t)
        out[key] = t.detach().clone()
    return out


def export_checkpoint(ckpt, out_path, report_path=None):
    """Write the plain state_dict of checkpoint dict `ckpt` (`model`, optional `meta`) and its sparsity
    report (computed from the exported zeros); returns the report."""
    plain = plain_state_dict(ckpt["model"])
    torch.save(plain, out_path)
    rep = sparsity_report(plain, from_zeros=True)
    rep["meta"] = ckpt.get("meta") or {}
    if report_path is not None:
        import json
        with open(report_path, "w") as f:
            json.dump(rep, f, indent=2)
    return rep
