"""What a training checkpoint holds, split by who owns it, and how it is put back.

- tensors (DCP, written by all ranks): `model.*` (weights, scores, masks, rank 0's BatchNorm statistics),
  `weight_opt.<param index>.<name>` (torch optimizer state), `score_opt.momentum_buffer`.
- extra.pt (rank 0, plain values): step/epoch/best, data position, optimizer hyper-parameters, meta,
  resolved config, code revision, world size and backend.
- rank_<r>.pt (each rank): its RNG states and its own BatchNorm statistics, which differ per rank under
  DDP because buffers are not synchronised (see bip_dist/engine/ddp.py).
Everything is either replicated or keyed by rank, so any world size can read any checkpoint.
"""

import random

import numpy as np
import torch

from bip_dist.config import config_to_dict
from bip_dist.run_dir import git_revision

FORMAT = "bip-dist-ckpt/1"


# --- RNG --------------------------------------------------------------------------------------------
def seed_host_rngs(seed, rank):
    """Seed NumPy's and Python's global generators from (run seed, rank), before any resume puts a
    checkpoint's states back. Left alone they start from OS entropy, different in every process, and
    two fresh runs with one seed would save different RNG states. (torch's generator is seeded with the
    run seed when the model is built; DataLoader workers are seeded by torch from the loader's seeded
    generator and their index.)"""
    numpy_seq, python_seq = np.random.SeedSequence([seed, rank]).spawn(2)
    np.random.seed(numpy_seq.generate_state(4))
    random.seed(int(python_seq.generate_state(1, np.uint64)[0]))


def rng_state():
    """torch / numpy / python (and CUDA) generator states as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    st = {"torch": torch.get_rng_state(),
          "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached": float(cached)},
          "python": {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
                     "gauss": gauss if gauss is None else float(gauss)}}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st):
    """Inverse of rng_state."""
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = st["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# --- collecting -------------------------------------------------------------------------------------
def _rank_local(name):
    """Buffers other than masks (BatchNorm statistics) are per-rank state under DDP."""
    return not name.endswith("mask")


def local_buffers(model):
    """This rank's copy of the model's per-rank buffers (detached clones)."""
    return {n: b.detach().clone() for n, b in model.named_buffers() if _rank_local(n)}


def model_tensors(model, rank):
    """`model.*` entries. Only rank 0 offers the per-rank buffers: DCP writes a replicated key from one
    rank of its choosing, and the checkpoint's (and the export's) statistics must be rank 0's."""
    buffers = {n for n, _ in model.named_buffers() if _rank_local(n)}
    return {"model." + k: v for k, v in model.state_dict().items() if rank == 0 or k not in buffers}


def optimizer_split(sd, prefix):
    """A torch optimizer state_dict as DCP tensors plus a plain part (param groups, non-tensor state)."""
    tensors, plain = {}, {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{prefix}.{idx}.{k}"] = v
            else:
                plain.setdefault(int(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "state": plain}


def optimizer_join(flat, plain, prefix):
    """Rebuild a torch optimizer state_dict from optimizer_split's two parts."""
    state = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, t in flat.items():
        if key.startswith(prefix + "."):
            idx, name = key[len(prefix) + 1:].split(".", 1)
            state.setdefault(int(idx), {})[name] = t
    return {"state": state, "param_groups": plain["param_groups"]}


def collect(cfg, state, parts, engine, data, weight_sd):
    """(tensors for DCP, extra for rank 0, this rank's own part) of the current training state;
    `weight_sd` is engine.weight_opt_state()."""
    flat = model_tensors(parts.model, engine.rank)
    extra = {"format": FORMAT, "state": state.as_dict(), "data": data,
             "meta": parts.meta, "config": config_to_dict(cfg), "git_rev": git_revision(),
             "world_size": engine.world_size, "backend": type(engine).__name__}
    t, extra["weight_opt"] = optimizer_split(weight_sd, "weight_opt")
    flat.update(t)
    if parts.score_opt is not None:
        sd = parts.score_opt.state_dict()
        if sd.get("momentum_buffer") is not None:
            flat["score_opt.momentum_buffer"] = sd["momentum_buffer"]
        extra["score_opt"] = {"lr": float(sd["lr"])}
    mine = {"rank": engine.rank, "world_size": engine.world_size, "rng": rng_state(),
            "buffers": local_buffers(parts.model)}
    return flat, extra, mine


# --- restoring --------------------------------------------------------------------------------------
def data_position(state, steps_per_epoch, batch_size, world_size):
    """Where both batch streams stand: they come from one sampler, so (epoch, step in epoch) suffices."""
    return {"epoch": int(state.epoch), "step_in_epoch": int(state.step - state.epoch * steps_per_epoch),
            "steps_per_epoch": int(steps_per_epoch), "batch_size": int(batch_size), "world_size": int(world_size)}


def resume_step(data, step, steps_per_epoch, batch_size, world_size):
    """The global step to resume at. Same world size and batch: `step` itself. Otherwise the step whose
    position in the epoch covers the same number of samples (rounded down: a partial batch is repeated),
    so the epoch, the sample coverage and the epoch-based LR schedule carry over."""
    if data is None or (data["world_size"] == world_size and data["batch_size"] == batch_size
                        and data["steps_per_epoch"] == steps_per_epoch):
        return step
    seen = data["step_in_epoch"] * data["batch_size"] * data["world_size"]
    return data["epoch"] * steps_per_epoch + min(seen // (batch_size * world_size), steps_per_epoch)


def apply_model(model, flat, mine):
    """Load `model.*` tensors in place (score / mask views into the store stay views), then this rank's
    own per-rank buffers when the checkpoint has them."""
    sd = {k[len("model."):]: v for k, v in flat.items() if k.startswith("model.")}
    model.load_state_dict(sd)
    if mine is not None:
        own = dict(model.named_buffers())
        with torch.no_grad():
            for k, v in mine["buffers"].items():
                own[k].copy_(v)


def apply_optimizers(parts, flat, extra, engine):
    """Put both optimizers back (after apply_model: DeepSpeed refreshes its partitions from the model)."""
    if "weight_opt" not in extra:
        raise ValueError("checkpoint has no weight-optimizer state (written by an older DeepSpeed run); "
                         "resume it with bip-dist of that version")
    engine.load_weight_opt_state(optimizer_join(flat, extra["weight_opt"], "weight_opt"))
    if parts.score_opt is not None:
        parts.score_opt.load_state_dict({"momentum_buffer": flat.get("score_opt.momentum_buffer"),
                                         **extra.get("score_opt", {})})
