"""What `ckpt.resume` resumes from, checked before it is read, and how a training checkpoint is put back.

'auto' takes this run's newest checkpoint that passes its checks (integrity.verify); a bad one is set
aside as <name>.bad with one line saying why, and the one before it is tried. An explicit path
(checkpoint.locate) must pass its checks, or the run stops with one line naming it.
"""

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.integrity import BadCheckpoint, verify
from bip_dist.checkpoint.io import load_checkpoint
from bip_dist.checkpoint.layout import EXTRA, rank_file
from bip_dist.checkpoint.paths import locate
from bip_dist.checkpoint.state import apply_model, apply_optimizers, resume_step, set_rng_state


def pick(resume, layout, note):
    """The checkpoint to resume from, verified, or None for a fresh start. `layout` is this run's
    checkpoints/ folder; `note(line)` reports a bad checkpoint set aside."""
    if not resume:
        return None
    if resume != "auto":
        path = locate(resume)
        verify(path)
        return path
    bad = []
    for path in layout.newest_first():
        try:
            verify(path)
        except BadCheckpoint as e:
            moved = layout.set_aside(path)
            bad.append(moved.name)
            note(f"resume: {e}; set aside as {moved.name}, trying the checkpoint before it")
            continue
        if bad:
            note(f"resume: continuing from {path.name}")
        return path
    if bad:
        raise BadCheckpoint(f"{layout.root}: no good checkpoint left to resume (set aside: {', '.join(bad)}); "
                            "start over with --overwrite")
    return None


def restore_folder(path, state, parts, engine, steps_per_epoch, batch_size):
    """Put a sharded checkpoint back into `parts` and `state`; returns its extra.pt."""
    extra = load_checkpoint(path / EXTRA)
    mine_path = path / rank_file(engine.rank)
    mine = load_checkpoint(mine_path) if mine_path.is_file() else None
    flat = dcp_io.load_flat(path)
    apply_model(parts.model, flat, mine)
    apply_optimizers(parts, flat, extra, engine)
    state.load(extra["state"])
    state.step = resume_step(extra.get("data"), state.step, steps_per_epoch, batch_size, engine.world_size)
    if mine is not None:  # a rank the writing job did not have keeps its fresh-start generators
        set_rng_state(mine["rng"])
    return extra


def restore_file(path, state, parts, engine):
    """Put a single-file checkpoint (final.pt) back; returns it."""
    ck = load_checkpoint(path, map_location=engine.device)
    if not ck.get("weight_opt"):
        raise ValueError(f"{path}: no weight-optimizer state; resume from a checkpoints/ folder")
    parts.model.load_state_dict(ck["model"])
    engine.load_weight_opt_state(ck["weight_opt"])
    if parts.score_opt is not None:
        parts.score_opt.load_state_dict(ck["score_opt"])
    state.load(ck["state"])
    set_rng_state(ck["rng"])
    return ck
