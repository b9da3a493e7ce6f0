"""What a training checkpoint holds and when it is written: everything needed for an exact resume.

Layout under the run folder:
    checkpoints/step_00001234.pt   full state (model with scores and masks, both optimizers, step, epoch,
                                   RNG states, meta, resolved config, code revision)
    checkpoints/best.pt            best validation top-1 so far
    checkpoints/latest             name of the newest complete checkpoint, replaced last
    final.pt                       the stage's result, the next stage's `source_net`
Every file appears through an atomic rename, and `latest` only after the file it names, so a crash at any
moment leaves the previous checkpoint loadable and `latest` pointing at it.
"""

import random
from pathlib import Path

import numpy as np
import torch

from bip_dist.checkpoint.io import load_checkpoint, save_atomic
from bip_dist.config import config_to_dict
from bip_dist.run_dir import git_revision


def rng_state():
    st = {"torch": torch.get_rng_state(), "numpy": _np_state(), "python": _py_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _np_state():
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
            "cached": float(cached)}


def _py_state():
    version, internal, gauss = random.getstate()
    return {"version": int(version), "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss": gauss if gauss is None else float(gauss)}


def set_rng_state(st):
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = st["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["internal"].tolist()), p["gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def training_state(cfg, state, parts):
    return {
        "model": parts.model.state_dict(),
        "weight_opt": parts.weight_opt.state_dict(),
        "score_opt": parts.score_opt.state_dict() if parts.score_opt is not None else {},
        "state": {k: v for k, v in state.items() if k != "run_dir"},
        "rng": rng_state(),
        "meta": parts.meta,
        "config": config_to_dict(cfg),
        "git_rev": git_revision(),
    }


class Checkpointer:
    """Single-writer checkpoints (rank 0 writes; every rank reads). Distributed engines may replace it."""

    def __init__(self, cfg, run_dir, engine):
        self.cfg, self.engine = cfg, engine
        self.dir = Path(run_dir) / "checkpoints"
        self.final = Path(run_dir) / "final.pt"
        self.every = cfg.ckpt.every_steps
        self.keep = cfg.ckpt.keep_last

    def _resume_path(self):
        r = self.cfg.ckpt.resume
        if not r:
            return None
        if r == "auto":
            ptr = self.dir / "latest"
            return self.dir / ptr.read_text().strip() if ptr.is_file() else None
        return Path(r)

    def restore(self, state, parts, loaders):
        path = self._resume_path()
        if path is None:
            return False
        ck = load_checkpoint(path, map_location=self.engine.device)
        parts.model.load_state_dict(ck["model"])
        parts.weight_opt.load_state_dict(ck["weight_opt"])
        if parts.score_opt is not None:
            parts.score_opt.load_state_dict(ck["score_opt"])
        state.update(ck["state"])
        set_rng_state(ck["rng"])
        return True

    def _write(self, name, state, parts, pointer=True):
        if self.engine.is_main:
            save_atomic(training_state(self.cfg, state, parts), self.dir / name)
            if pointer:
                tmp = self.dir / "latest.tmp"
                tmp.write_text(name + "\n")
                tmp.replace(self.dir / "latest")
                self._prune_old()
        self.engine.barrier()

    def _prune_old(self):
        steps = sorted(self.dir.glob("step_*.pt"))
        for old in steps[:-self.keep]:
            old.unlink(missing_ok=True)

    def maybe_save_step(self, state, parts, loaders):
        if self.every and state["step"] % self.every == 0:
            self._write(f"step_{state['step']:08d}.pt", state, parts)

    def save_epoch(self, state, parts, loaders, metrics, final=False):
        top1 = metrics.get("val_top1")
        is_best = top1 is not None and top1 > state["best_top1"]
        if is_best:
            state["best_top1"] = top1
        self._write(f"step_{state['step']:08d}.pt", state, parts)
        if is_best:
            self._write("best.pt", state, parts, pointer=False)
        if final and self.engine.is_main:
            save_atomic(training_state(self.cfg, state, parts), self.final)

    def close(self):
        pass
