"""Shared scores (the reference presets) under DDP and DeepSpeed ZeRO-1/2, world size 2 over gloo, and
through checkpoints:
- 2 ranks x batch b equal 1 process x batch 2b (weights = scores to fp32 tolerance, masks identical), so
  the copies weights <-> scores agree on every rank and DeepSpeed's fp32 master takes the score step;
- a run killed mid-way and resumed ends bitwise equal to the run never stopped: in one process (BiP and
  HYDRA) and on 2 DeepSpeed ranks.
One mp.spawn runs every 2-rank job, so process start-up is paid once.
"""

import json
import os

import pytest
import torch

from bip_dist.engine import LocalEngine
from bip_dist.train.build import build_parts
from tests.helpers import ROOT, models, outputs, runs
from tests.helpers import equivalence as E
from tests.helpers.data import shard
from tests.helpers.dist import spawn
from tests.helpers.fidelity import preset

pytestmark = pytest.mark.usefixtures("tiny_models")
ZERO1, ZERO2 = (["dist.backend=deepspeed", f"dist.deepspeed_config={ROOT}/configs/deepspeed/zero{s}.json"]
                for s in (1, 2))
CASES = {"bip": ("bip", []), "hydra": ("hydra", []), "bip_zero1": ("bip", ZERO1),
         "hydra_zero1": ("hydra", ZERO1),
         "bip_zero2": ("bip", ZERO2 + ["bip.fused=true"])}  # ZeRO-2 runs the fused step only
# The reference preset's keys, on the checkpoint tests' default config.
SHARED = ["prune.score_init=shared", "prune.kept_count=reference", "optim.schedule=cosine_epoch_reference",
          "score_optim.schedule=step_epoch", "score_optim.weight_decay=0.0001", "bip.fused=false"]


def _cfg(case):
    kind, extra = CASES[case]
    # tinynet_nobn: per-rank BatchNorm statistics would make 2 ranks differ from 1
    return preset(kind, "model.arch=tinynet_nobn", f"data.batch_size={E.PER_RANK}", "dist.bucket_mb=0.0005",
                  "dist.check_masks=true", "prune.k=0.5", f"train.epochs={E.ITERS}", *extra)


def _train(case, engine, rank=0, world=1):
    parts = build_parts(_cfg(case), engine, E.CLASSES)
    parts.step.set_lrs(0.2, 0.5)
    for b in E.batches(parts.step.two_streams):
        parts.step(shard(b, rank, world))
    store = parts.store
    assert all(torch.equal(m.scores, m.weight) for _, m in store.layers)
    params = {n: p.detach().clone() for n, p in parts.model.named_parameters() if not n.endswith("scores")}
    return {"params": params, "scores": store.scores.clone(), "mask": store.mask.clone()}


def _worker(rank, out, ckpt_jobs):
    from bip_dist.engine import make_engine
    with models.registered():
        res = {}
        for case in CASES:
            engine = make_engine(_cfg(case))
            res[case] = _train(case, engine, rank, E.WORLD)
            engine.reducer.remove()
        torch.save(res, os.path.join(out, f"r{rank}.pt"))
        for folder, crash_at, extra in ckpt_jobs:
            cfg = runs.make_cfg(folder, "bip", *SHARED, *ZERO1, *extra)
            engine = make_engine(cfg)
            runs.run(cfg, engine, crash_at)
            engine.barrier()
    engine.shutdown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("shared")
    a, b = out / "A", out / "B"
    jobs = [(str(a), 0, []), (str(b), 5, []), (str(b), 0, ["ckpt.resume=auto"])]
    spawn(E.WORLD, _worker, str(out), jobs)
    return [torch.load(out / f"r{r}.pt") for r in range(E.WORLD)], a, b


@pytest.mark.parametrize("case", list(CASES))
def test_two_ranks_equal_one_process(case, two_ranks):
    ref = _train(case, LocalEngine())
    E.assert_same_result(ref, two_ranks[0], case)
    torch.manual_seed(0)
    start = build_parts(_cfg(case), LocalEngine(), E.CLASSES).store
    assert not torch.equal(start.mask, ref["mask"])  # training moved the mask


def _final(folder):
    return outputs.final_state(json.loads(next(folder.rglob("result.json")).read_text())["run_dir"])


def test_deepspeed_resume_bitwise(two_ranks):
    _, a, b = two_ranks
    outputs.assert_same(_final(a), _final(b))


@pytest.mark.parametrize("trainer, crash_at", [("bip", 9), ("hydra", 15)])
def test_resume_bitwise(tmp_path, trainer, crash_at):
    a, b = tmp_path / "a", tmp_path / "b"
    runs.run(runs.make_cfg(a, trainer, *SHARED))
    assert runs.run(runs.make_cfg(b, trainer, *SHARED), crash_at=crash_at) is None
    runs.run(runs.make_cfg(b, trainer, *SHARED, "ckpt.resume=auto"))
    fa, fb = _final(a), _final(b)
    outputs.assert_same(fa, fb)
    model = fa["model"]
    scores = [k for k in model if k.endswith(".scores")]
    assert scores and all(torch.equal(model[k], model[k.replace(".scores", ".weight")]) for k in scores)
