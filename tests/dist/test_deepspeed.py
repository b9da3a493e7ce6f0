"""DeepSpeed ZeRO-1 (and ZeRO-2 on the fused step) give the DDP / single-process result within fp32 tolerance."""

import pytest
import torch

from bip_dist.engine import LocalEngine
from tests.helpers import ROOT
from tests.helpers import equivalence as E
from tests.helpers.dist import spawn

pytest.importorskip("deepspeed")
ZERO1 = ["bip_fused", "bip_3pass", "bip_paper", "hydra", "dense", "bip_cl", "bip_first_order"]
ZERO2 = ["bip_fused", "dense", "bip_first_order"]


def _spawn(tmp_path_factory, stage, cases):
    out = tmp_path_factory.mktemp(f"zero{stage}")
    conf = str(ROOT / "configs" / "deepspeed" / f"zero{stage}.json")
    spawn(E.WORLD, E.deepspeed_worker, str(out), cases, conf)
    return [torch.load(out / f"ds{r}.pt") for r in range(E.WORLD)]


@pytest.fixture(scope="module")
def zero1(tmp_path_factory):
    return _spawn(tmp_path_factory, 1, ZERO1 + ["bip_first_order_paper"])


@pytest.fixture(scope="module")
def zero2(tmp_path_factory):
    return _spawn(tmp_path_factory, 2, ZERO2 + ["bip_3pass"])


def _compare(results, case):
    torch.manual_seed(0)
    E.assert_same_result(E.run(case, LocalEngine()), results, case)


@pytest.mark.parametrize("case", ZERO1)
def test_zero1_matches_single_process(case, zero1):
    _compare(zero1, case)


@pytest.mark.parametrize("case", ZERO2)
def test_zero2_matches_single_process(case, zero2):
    _compare(zero2, case)


def test_zero2_refuses_score_pass_over_weights(zero2):
    """ZeRO-2's hooks would swallow the weight gradients of the reference's "bilevel" pass."""
    for res in zero2:
        assert "zero1.json" in res["bip_3pass"]["error"]


def test_standard_layout_lets_deepspeed_view_params_as_bytes():
    """channels_last weights, 1x1 kernels included, get strides ZeRO's broadcast can view as bytes."""
    import torch.nn as nn

    from bip_dist.engine.deepspeed_engine import standard_layout_
    model = nn.Sequential(nn.Conv2d(64, 8, 3), nn.Conv2d(8, 64, 1)).to(memory_format=torch.channels_last)
    before = [p.detach().clone() for p in model.parameters()]
    assert model[1].weight.is_contiguous() and model[1].weight.stride(-1) == 8  # in_channels
    standard_layout_(model)
    for p, b in zip(model.parameters(), before):
        assert p.view(torch.uint8).numel() == 4 * p.numel() and torch.equal(p, b)


def test_first_order_paper_ig_refused(zero1):
    """ZeRO frees the whole weight gradients that the first-order paper IG squares."""
    for res in zero1:
        assert "dist.backend=ddp" in res["bip_first_order_paper"]["error"]


@pytest.mark.parametrize("stage", [0, 3])
def test_unsupported_zero_stage_named(tmp_path, stage):
    import json

    from bip_dist.engine.deepspeed_engine import load_ds_config
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"zero_optimization": {"stage": stage}}))
    with pytest.raises(ValueError, match=f"zero_optimization.stage = {stage}; bip-dist runs ZeRO stage 1 or 2"):
        load_ds_config(str(path), 8)
    assert load_ds_config("configs/deepspeed/zero1.json", 8)["train_micro_batch_size_per_gpu"] == 8
