"""Two gloo ranks: exact resume at the same world size, and resharding 2 -> 1 and 1 -> 2.

Under DDP weights, scores, masks and both optimizers are replicated, so they carry over bitwise whatever
the world size; what changes with it is the data position (remapped by samples seen), per-rank RNG and
BatchNorm statistics (new ranks start from rank 0's) and the reduction order (so the continued run is
not bitwise the run that never stopped at the other size).
"""

import json

import pytest
import torch

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.consolidate import consolidate
from bip_dist.checkpoint.layout import Layout
from tests.helpers import models, outputs, runs
from tests.helpers.dist import spawn


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """One spawn for every 2-rank job (process start-up dominates): A uninterrupted; B killed at step 5
    and resumed; C killed at step 5 (resumed on 1 rank below); F resumes E (1 rank, killed at 8) on 2;
    G is B with asynchronous saves."""
    t = {k: tmp_path_factory.mktemp(k) for k in "ABCDEFG"}
    with models.registered():  # a module-wide fixture runs outside any test's tiny_models
        assert runs.run(runs.make_cfg(t["E"], "bip"), crash_at=9) is None
        e_ckpt = Layout(next(t["E"].rglob("checkpoints"))).newest()
        jobs = [(str(t["A"]), "bip", [], 0, None),
                (str(t["B"]), "bip", [], 5, None), (str(t["B"]), "bip", ["ckpt.resume=auto"], 0, None),
                (str(t["C"]), "bip", [], 5, None),
                (str(t["F"]), "bip", [f"ckpt.resume={e_ckpt}"], 0, str(t["F"] / "start")),
                (str(t["G"]), "bip", ["ckpt.async_save=true"], 5, None),
                (str(t["G"]), "bip", ["ckpt.async_save=true", "ckpt.resume=auto"], 0, None)]
        spawn(2, runs.run_jobs, jobs)
        c_ckpt = Layout(next(t["C"].rglob("checkpoints"))).newest()
        d = runs.run(runs.make_cfg(t["D"], "bip", f"ckpt.resume={c_ckpt}"), record=str(t["D"] / "start0.pt"))
    return t, e_ckpt, c_ckpt, d


def _result(folder):
    return json.loads(next(folder.rglob("result.json")).read_text())


def test_two_ranks_resume_bitwise(ddp_runs):
    t = ddp_runs[0]
    a, b = _result(t["A"]), _result(t["B"])
    outputs.assert_same(outputs.final_state(a["run_dir"]), outputs.final_state(b["run_dir"]))
    # Validation sums both ranks' shards through each rank's own BatchNorm statistics: equal losses mean
    # rank 1's statistics came back from its rank file too.
    assert a["val_loss"] == b["val_loss"] and a["step"] == b["step"] == 6
    g = _result(t["G"])  # asynchronous saves
    outputs.assert_same(outputs.final_state(a["run_dir"]), outputs.final_state(g["run_dir"]))


def _assert_starts_from(start, ckpt, own_stats=False):
    """`own_stats`: the rank read its own BatchNorm statistics from its rank file (not rank 0's)."""
    model = consolidate(ckpt)
    assert start["model"].keys() == model.keys()
    for k in model:
        if own_stats and k.endswith(("running_mean", "running_var")):
            continue
        assert torch.equal(start["model"][k], model[k]), k
    flat = dcp_io.load_flat(ckpt)
    for i, buf in start["weight_opt"].items():
        assert torch.equal(buf, flat[f"weight_opt.{i}.momentum_buffer"]), i
    assert torch.equal(start["score_opt"], flat["score_opt.momentum_buffer"])


def test_two_to_one(ddp_runs):
    t, _, c_ckpt, d = ddp_runs
    assert c_ckpt.name == "step_00000004_ep0001"  # 3 steps/epoch on 2 ranks
    start = torch.load(t["D"] / "start0.pt", weights_only=True)
    # epoch 1, 1 step in = 32 samples (2 ranks x 16); on 1 rank 6 steps/epoch, 2 steps in: step 6 + 2
    assert (start["epoch"], start["step"]) == (1, 8)
    _assert_starts_from(start, c_ckpt)
    assert d["step"] == 12


def test_one_to_two(ddp_runs):
    t, e_ckpt, _, _ = ddp_runs
    assert e_ckpt.name == "step_00000008_ep0001"
    for rank in (0, 1):  # rank 1 has no rank file: it takes rank 0's BatchNorm statistics
        start = torch.load(t["F"] / f"start{rank}.pt", weights_only=True)
        assert (start["epoch"], start["step"]) == (1, 4)
        _assert_starts_from(start, e_ckpt)
    assert _result(t["F"])["step"] == 6


def test_two_ranks_record_checksums(ddp_runs):
    """Each rank's manifest covers what it wrote (its shard and rank file; rank 0 also extra.pt and
    .metadata), with synchronous and background saves, and a rank's lost manifest is noticed."""
    import json as _json
    from bip_dist.checkpoint.integrity import BadCheckpoint, verify
    t = ddp_runs[0]
    for run in ("A", "G"):
        ckpt = Layout(next(t[run].rglob("checkpoints"))).newest()
        assert verify(ckpt).startswith("6 files")  # 2 shards, 2 rank files, extra.pt, .metadata
        mine = _json.loads((ckpt / "checksums_00001.json").read_text())
        assert set(mine) == {"__1_0.distcp", "rank_00001.pt"}
    (ckpt / "checksums_00001.json").unlink()
    with pytest.raises(BadCheckpoint, match="no checksum recorded for __1_0.distcp"):
        verify(ckpt)


@pytest.fixture(scope="module")
def ds_runs(tmp_path_factory):
    """DeepSpeed ZeRO-1 on 2 ranks: A uninterrupted, B killed at step 5 and resumed; C killed at 5, then
    resumed by DeepSpeed on 1 rank (D) and by DDP on 2 ranks (E)."""
    pytest.importorskip("deepspeed")
    ds = ["dist.backend=deepspeed", "dist.deepspeed_config=configs/deepspeed/zero1.json"]
    t = {k: tmp_path_factory.mktemp("ds" + k) for k in "ABCDE"}
    spawn(2, runs.run_jobs, [(str(t["A"]), "bip", ds, 0, None), (str(t["B"]), "bip", ds, 5, None),
                             (str(t["B"]), "bip", ds + ["ckpt.resume=auto"], 0, None),
                             (str(t["C"]), "bip", ds, 5, None)])
    c_ckpt = Layout(next(t["C"].rglob("checkpoints"))).newest()
    spawn(1, runs.run_jobs, [(str(t["D"]), "bip", ds + [f"ckpt.resume={c_ckpt}"], 0, str(t["D"] / "start"))])
    spawn(2, runs.run_jobs, [(str(t["E"]), "bip", [f"ckpt.resume={c_ckpt}"], 0, str(t["E"] / "start"))])
    return t, c_ckpt


def test_deepspeed_resume_bitwise(ds_runs):
    """The gathered momentum round-trips exactly: a run killed at step 5 and resumed equals the run never
    stopped, momentum included."""
    t, _ = ds_runs
    ra, rb = _result(t["A"]), _result(t["B"])
    a, b = outputs.final_state(ra["run_dir"]), outputs.final_state(rb["run_dir"])
    assert len(a["weight_opt"]) > 0  # whole momentum per weight, in torch SGD's format
    outputs.assert_same(a, b)
    assert ra["val_loss"] == rb["val_loss"]
    ckpt = Layout(next(t["B"].rglob("checkpoints"))).newest()
    assert not (ckpt / "deepspeed").exists() and "weight_opt" in torch.load(ckpt / "extra.pt", weights_only=True)


def test_deepspeed_reshards_and_crosses_backend(ds_runs):
    """A 2-rank ZeRO-1 checkpoint resumes on 1 DeepSpeed rank and under DDP on 2 ranks, from exactly the
    saved weights and momenta, and both runs finish."""
    t, c_ckpt = ds_runs
    assert torch.load(c_ckpt / "extra.pt", weights_only=True)["world_size"] == 2
    for run, ranks, last in (("D", 1, 12), ("E", 2, 6)):  # 1 rank: twice the steps per epoch
        for rank in range(ranks):
            start = torch.load(t[run] / f"start{rank}.pt", weights_only=True)
            _assert_starts_from(start, c_ckpt, own_stats=rank > 0)
        assert _result(t[run])["step"] == last
