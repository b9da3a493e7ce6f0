"""dist.bn_stats: BatchNorm running statistics drift apart under DDP and are made one at epoch ends."""

import os
import sys

import torch
import torch.multiprocessing as mp
import torch.nn as nn

sys.path.insert(0, os.path.dirname(__file__))
import dist_helpers as H  # noqa: E402


def _bn_net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def _stats(model):
    bn = model[1]
    return torch.cat([bn.running_mean, bn.running_var]).clone()


def _worker(rank, port, outdir):
    from bip_dist.config.schema import OptimConfig
    from bip_dist.engine.ddp import DDPEngine
    from bip_dist.train.registry import make_step
    env = H.env_for(rank, port)
    torch.set_num_threads(1)
    engine = DDPEngine(H.dist_cfg(), H.PER_RANK, env)
    out = {}
    for mode in ("local", "reduce", "broadcast"):
        torch.manual_seed(0)
        model = _bn_net()
        step = make_step("dense", engine, model, None, OptimConfig(lr=0.05, weight_decay=0.0), None, None)
        model.train()
        for b in H.batches(False):
            x, y = H.shard(b, rank, H.WORLD)
            step((x + rank, y))  # shifted per rank, so each rank's statistics differ clearly
        out[mode] = {"before": _stats(model)}
        engine.sync_bn_stats(mode)
        out[mode]["after"] = _stats(model)
    torch.save(out, os.path.join(outdir, f"bn{rank}.pt"))
    engine.shutdown()


def test_bn_stats_modes(tmp_path):
    mp.spawn(_worker, args=(H.free_port(), str(tmp_path)), nprocs=H.WORLD)
    r0, r1 = (torch.load(tmp_path / f"bn{r}.pt") for r in range(H.WORLD))
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
