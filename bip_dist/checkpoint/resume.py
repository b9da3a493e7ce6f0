"""What `ckpt.resume` resumes from, checked before it is read, and how a training checkpoint is put back.

'auto' takes this run's newest checkpoint that passes its checks (integrity.verify); a bad one is set
aside as <name>.bad with one line saying why, and the one before it is tried. An explicit path
(checkpoint.locate) must pass its checks, or the run stops with one line naming it. A checkpoint is
resumed only into a run of its own kind (check_meta) and only when it holds finite tensors: another
arch, trainer, layer type or k would load with a traceback, or not at all, and a diverged one would
only be found at the first logging step, blamed on the run.
"""

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.finite import assert_finite
from bip_dist.checkpoint.integrity import UNCHECKED, BadCheckpoint, verify
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
        _say_unchecked(path, verify(path), note)
        return path
    bad = []
    for path in layout.newest_first():
        try:
            checked = verify(path)
        except BadCheckpoint as e:
            moved = layout.set_aside(path)
            bad.append(moved.name)
            note(f"resume: {e}; set aside as {moved.name}, trying the checkpoint before it")
            continue
        _say_unchecked(path, checked, note)
        if bad:
            note(f"resume: continuing from {path.name}")
        return path
    if bad:
        raise BadCheckpoint(f"{layout.root}: no good checkpoint left to resume (set aside: {', '.join(bad)}); "
                            "start over with --overwrite")
    return None


def _say_unchecked(path, checked, note):
    if UNCHECKED in checked:
        note(f"resume: {path}: {checked}")


# The run description fields a resume must share with its checkpoint; k only where there is a mask.
RESUME_FIELDS = ("arch", "dataset", "num_classes", "mode", "trainer", "layer_type")


def check_meta(meta, want, path):
    """Raise ValueError naming the first field of the checkpoint's `meta` that differs from this run's
    `want` (handover.run_meta); fields an older checkpoint lacks are not compared."""
    fields = RESUME_FIELDS + (("k",) if want.get("layer_type", "dense") != "dense" else ())
    for f in fields:
        if f in (meta or {}) and meta[f] != want[f]:
            raise ValueError(f"{path}: the checkpoint's {f} is {meta[f]!r}, this run has {want[f]!r}; "
                             "--resume continues a run of the same model and trainer (start a new stage "
                             "from it with source_net)")


def restore_folder(path, state, parts, engine, steps_per_epoch, batch_size):
    """Put a sharded checkpoint back into `parts` and `state`; returns its extra.pt."""
    extra = load_checkpoint(path / EXTRA)
    check_meta(extra.get("meta"), parts.meta, path)
    mine_path = path / rank_file(engine.rank)
    mine = load_checkpoint(mine_path) if mine_path.is_file() else None
    flat = dcp_io.load_flat(path)
    assert_finite(flat, path)
    if mine is not None:
        assert_finite(mine["buffers"], mine_path)
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
    if not isinstance(ck, dict) or not ck.get("weight_opt"):
        raise ValueError(f"{path}: no weight-optimizer state; resume from a checkpoints/ folder")
    check_meta(ck.get("meta"), parts.meta, path)
    opt = {f"weight_opt.{i}.{k}": v for i, st in ck["weight_opt"].get("state", {}).items() for k, v in st.items()}
    if (ck.get("score_opt") or {}).get("momentum_buffer") is not None:
        opt["score_opt.momentum_buffer"] = ck["score_opt"]["momentum_buffer"]
    assert_finite({**ck["model"], **opt}, path)
    parts.model.load_state_dict(ck["model"])
    engine.load_weight_opt_state(ck["weight_opt"])
    if parts.score_opt is not None:
        parts.score_opt.load_state_dict(ck["score_opt"])
    state.load(ck["state"])
    set_rng_state(ck["rng"])
    return ck


def end_metrics(state, saved, path, max_steps, epochs, steps_per_epoch):
    """None while the run has steps left after the restored `state`. At the run's end: the last evaluation
    `saved` with the checkpoint, from which final.pt and result.json are written (the process had died
    before writing them). A checkpoint past the end, or at it without an evaluation, raises ValueError:
    training nothing, the run would write a final.pt and result.json its config does not describe."""
    end = min(max_steps or epochs * steps_per_epoch, epochs * steps_per_epoch)
    if state.step < end and state.epoch < epochs:
        return None
    metrics = dict(saved.get("metrics") or {})
    past = state.step > end or state.epoch > epochs
    if metrics and not past:
        return metrics
    why = "past this run's end" if past else "at this run's end but holds no evaluation"
    raise ValueError(f"{path}: the checkpoint is at step {state.step} (epoch {state.epoch}), {why} (step {end}: "
                     f"train.max_steps={max_steps}, train.epochs={epochs}); nothing is left to train: raise "
                     "train.max_steps or train.epochs, or use the checkpoint as it is")
