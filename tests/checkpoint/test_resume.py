"""Exact resume in one process: a run killed at step S and resumed with ckpt.resume=auto ends bitwise
equal (weights, scores, masks, BatchNorm statistics, both optimizers) to the run never stopped."""

import os

import pytest
import torch

from bip_dist.checkpoint.consolidate import consolidate
from bip_dist.checkpoint.layout import Layout
from tests.helpers import outputs, runs

pytestmark = pytest.mark.usefixtures("tiny_models")

# bip: 6 steps/epoch (two 8-image streams of 96 samples), the one-stream trainers 12; 2 epochs, a save every
# 2 steps.
CRASH = {"dense": 15, "hydra": 15, "bip": 9, "bip_first_order": 15}
_REF = {}


def reference(tmp_path_factory, trainer, *extra):
    key = (trainer,) + extra
    if key not in _REF:
        res = runs.run(runs.make_cfg(tmp_path_factory.mktemp("ref"), trainer, *extra))
        _REF[key] = outputs.final_state(res["run_dir"])
    return _REF[key]


@pytest.mark.parametrize("trainer", list(CRASH))
def test_killed_run_resumes_bitwise(tmp_path, tmp_path_factory, trainer):
    assert runs.run(runs.make_cfg(tmp_path, trainer), crash_at=CRASH[trainer]) is None
    ck = Layout(next(tmp_path.rglob("checkpoints")))
    newest = ck.newest()
    assert newest.name == ck.read_pointer("latest")
    assert newest.name.startswith(f"step_{CRASH[trainer] - 1:08d}")
    res = runs.run(runs.make_cfg(tmp_path, trainer, "ckpt.resume=auto"))
    assert res["step"] == 2 * (6 if trainer == "bip" else 12)
    outputs.assert_same(reference(tmp_path_factory, trainer), outputs.final_state(res["run_dir"]))


def test_async_save_resumes_bitwise(tmp_path, tmp_path_factory):
    """Background writes hold a CPU copy: training's in-place updates after the save began do not leak."""
    assert runs.run(runs.make_cfg(tmp_path, "bip", "ckpt.async_save=true", "ckpt.every_steps=1"), crash_at=8) is None
    ck = Layout(next(tmp_path.rglob("checkpoints")))
    # The save of step 8 never started (crash first); 7's write finished but a killed process publishes nothing
    # after its last step, so latest is 6 or 7, never a torn folder.
    assert ck.newest().name in ("step_00000006_ep0001", "step_00000007_ep0001")
    res = runs.run(runs.make_cfg(tmp_path, "bip", "ckpt.async_save=true", "ckpt.every_steps=1", "ckpt.resume=auto"))
    outputs.assert_same(reference(tmp_path_factory, "bip"), outputs.final_state(res["run_dir"]))


def test_keep_last_best_and_consolidate(tmp_path):
    res = runs.run(runs.make_cfg(tmp_path, "bip", "ckpt.keep_last=2", "ckpt.every_steps=1"))
    ck = Layout(os.path.join(res["run_dir"], "checkpoints"))
    names = [p.name for p in ck.complete()]
    best = ck.read_pointer("best")
    assert best in names and len(set(names) - {best}) == 2
    assert names[-1] == ck.read_pointer("latest") == "step_00000012_ep0002"
    state = consolidate(ck.newest())
    final = outputs.final_state(res["run_dir"])["model"]
    assert state.keys() == final.keys()
    assert all(torch.equal(state[k], final[k]) for k in final)
    # A run folder resolves to its final.pt, which holds the same model.
    assert all(torch.equal(v, final[k]) for k, v in consolidate(res["run_dir"]).items())


def test_consolidate_cli(tmp_path):
    from launcher.consolidate import main
    res = runs.run(runs.make_cfg(tmp_path, "hydra", "train.epochs=1"))
    folder = Layout(os.path.join(res["run_dir"], "checkpoints")).newest()
    out = tmp_path / "plain.pt"
    assert main([str(folder), "--out", str(out), "--with-meta"]) == 0
    obj = torch.load(out, weights_only=True)
    assert obj["meta"]["arch"] == "tinynet" and "conv1.scores" in obj["model"]
    assert main([str(tmp_path / "nope"), "--out", str(out)]) == 2
