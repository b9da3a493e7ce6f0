"""Stage hand-over: prune starts from a pretrain checkpoint, finetune from a prune checkpoint.

A checkpoint carries `meta` (arch, dataset, num_classes, layer_type, k). Loading the wrong one fails with
one line naming the field that differs, because a silently mismatched source net wastes a whole run.
"""

import torch

from bip_dist.checkpoint.consolidate import load_model


class HandoverError(ValueError):
    pass


def run_meta(cfg, num_classes):
    return {"arch": cfg.model.arch, "dataset": cfg.data.dataset, "num_classes": int(num_classes),
            "layer_type": cfg.prune.layer_type, "k": float(cfg.prune.k), "mode": cfg.mode,
            "trainer": cfg.trainer}


def check_handover(meta, want, path):
    """Raise HandoverError naming the first field of `meta` that conflicts with `want`.

    From a dense source only the architecture, dataset and class count must match; from a pruned source
    (finetune) the mask's layer type and k must match too.
    """
    fields = ["arch", "dataset", "num_classes"]
    if meta.get("layer_type", "dense") != "dense" and want["mode"] == "finetune":
        fields += ["layer_type", "k"]
    elif want["mode"] == "finetune":
        raise HandoverError(f"{path}: source_net is a dense ({meta.get('mode')}) checkpoint; finetune "
                            f"needs a pruned one (layer_type {want['layer_type']!r}, k={want['k']})")
    for f in fields:
        if f in meta and meta[f] != want[f]:
            raise HandoverError(f"{path}: source_net {f} is {meta[f]!r}, this run has {want[f]!r}")


def load_source_net(path, model, want):
    """Load the previous stage's weights (and scores/masks for finetune) into `model`.

    Accepts whatever checkpoint.locate accepts: our checkpoints, single-file or sharded folders (checked
    against `want`), and plain exported state_dicts (keys checked here). Returns True when the source
    carried scores/masks.
    """
    src = load_model(path)
    if src["meta"] is not None:
        check_handover(src["meta"], want, path)
    state = src["model"]
    own = model.state_dict()
    has_masks = any(k.endswith(".mask") for k in state)
    if want["mode"] != "finetune":
        state = {k: v for k, v in state.items() if not k.endswith((".scores", ".mask"))}
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise HandoverError(f"{path}: keys not in model {want['arch']!r}: {', '.join(unexpected[:5])}")
    missing = [k for k in own if k not in state and not k.endswith((".scores", ".mask"))]
    if missing:
        raise HandoverError(f"{path}: missing keys for model {want['arch']!r}: {', '.join(missing[:5])}")
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise HandoverError(f"{path}: {k} has shape {tuple(v.shape)}, model wants {tuple(own[k].shape)}")
    with torch.no_grad():
        for k, v in state.items():
            own[k].copy_(v)
    return has_masks and want["mode"] == "finetune"
