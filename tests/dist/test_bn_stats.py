"""dist.bn_stats: BatchNorm running statistics drift apart under DDP and are made one at epoch ends."""

import os

import torch
import torch.nn as nn

from tests.helpers import equivalence as E
from tests.helpers.data import shard
from tests.helpers.dist import spawn


def _bn_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def _stats(model):
    bn = model[1]
    return torch.cat([bn.running_mean, bn.running_var]).clone()


def _worker(rank, outdir):
    from bip_dist.config.schema import OptimConfig
    from bip_dist.engine.ddp import DDPEngine
    from bip_dist.engine.dist_env import DistEnv
    from bip_dist.train.registry import make_step
    engine = DDPEngine(E.dist_cfg(), E.PER_RANK, DistEnv.from_environ())
    out = {}
    for mode in ("local", "reduce", "broadcast"):
        torch.manual_seed(0)
        model = _bn_net()
        step = make_step("dense", engine, model, None, OptimConfig(lr=0.05, weight_decay=0.0), None, None)
        model.train()
        for b in E.batches(False):
            x, y = shard(b, rank, E.WORLD)
            step((x + rank, y))  # shifted per rank, so each rank's statistics differ clearly
        out[mode] = {"before": _stats(model)}
        engine.sync_bn_stats(mode)
        out[mode]["after"] = _stats(model)
    torch.save(out, os.path.join(outdir, f"bn{rank}.pt"))
    engine.shutdown()


def test_bn_stats_modes(tmp_path):
    spawn(E.WORLD, _worker, str(tmp_path))
    r0, r1 = (torch.load(tmp_path / f"bn{r}.pt") for r in range(E.WORLD))
    for mode in ("local", "reduce", "broadcast"):
        assert not torch.allclose(r0[mode]["before"], r1[mode]["before"]), mode  # they did drift apart
    assert torch.equal(r0["local"]["after"], r0["local"]["before"])
    assert torch.equal(r1["local"]["after"], r1["local"]["before"])
    mean = (r0["reduce"]["before"] + r1["reduce"]["before"]) / 2
    for r in (r0, r1):
        torch.testing.assert_close(r["reduce"]["after"], mean, rtol=1e-6, atol=1e-7)
    assert torch.equal(r0["reduce"]["after"], r1["reduce"]["after"])
    assert torch.equal(r0["broadcast"]["after"], r0["broadcast"]["before"])
    assert torch.equal(r1["broadcast"]["after"], r0["broadcast"]["before"])
