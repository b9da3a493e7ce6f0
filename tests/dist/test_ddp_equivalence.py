"""2 ranks x batch b under DDPEngine == 1 rank x batch 2b under LocalEngine, for every trainer.

One mp.spawn (gloo, world size 2, 127.0.0.1) runs all cases, so process start-up is paid once.
"""

import pytest
import torch

from bip_dist.engine import LocalEngine
from tests.helpers import equivalence as E
from tests.helpers.dist import spawn

EXACT = ["bip_fused", "bip_3pass", "bip_paper", "hydra", "dense", "finetune", "bip_cl", "bip_first_order",
         "bip_first_order_paper"]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    spawn(E.WORLD, E.ddp_worker, str(out), list(E.CASES))
    return [torch.load(out / f"ddp{r}.pt") for r in range(E.WORLD)]


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(0)
    return {case: E.run(case, LocalEngine()) for case in E.CASES}


@pytest.mark.parametrize("case", EXACT)
def test_two_ranks_equal_one_rank_double_batch(case, ddp_results, reference):
    E.assert_same_result(reference[case], ddp_results, case)


@pytest.mark.parametrize("case", ["bip_fused", "hydra", "bip_first_order"])
def test_training_moved_scores_and_mask(case, reference):
    """The equivalence above means something only if the scores and the mask actually moved."""
    torch.manual_seed(0)
    _, store, _ = E.build(case, LocalEngine())
    assert not torch.equal(store.scores, reference[case]["scores"])
    assert not torch.equal(store.mask, reference[case]["mask"])


@pytest.mark.parametrize("case", [c for c in E.CASES if E.CASES[c][0] != "dense"])
def test_masks_identical_across_ranks(case, ddp_results):
    a, b = (r[case] for r in ddp_results)
    assert torch.equal(a["mask"], b["mask"]) and a["hash"] == b["hash"]


def test_bf16_score_gradients_stay_close(ddp_results, reference):
    ref, got = reference["bip_fused"], ddp_results[0]["bip_bf16"]
    torch.testing.assert_close(got["scores"], ref["scores"], rtol=2e-2, atol=2e-3)
    flips = (got["mask"] != ref["mask"]).float().mean().item()
    assert flips < 0.01, f"{flips:.3%} of the mask differs with bf16 score gradients"


def test_bf16_halves_score_traffic(ddp_results):
    fp32, bf16 = ddp_results[0]["bip_fused"]["comm_bytes"], ddp_results[0]["bip_bf16"]["comm_bytes"]
    _, store, _ = E.build("bip_fused", LocalEngine())
    score_bytes = store.grad.numel() * store.grad.element_size() * E.ITERS
    assert fp32 - bf16 == score_bytes // 2


@pytest.mark.parametrize("case", ["bip_fused", "bip_first_order"])
def test_score_buckets_overlap_backward(case, ddp_results):
    """Several buckets per model, and all but the first layer's bucket launched from backward hooks (for
    first-order BiP: from the one backward that DDP reduces the weight gradients of)."""
    got = ddp_results[0][case]
    assert got["buckets"] >= 3
    assert got["overlapped"] >= (got["buckets"] - 1) * E.ITERS


def test_first_order_reduces_what_bip_reduces(ddp_results):
    """The one backward all-reduces one set of weight and one set of score gradients, as BiP's two do."""
    got = ddp_results[0]
    assert got["bip_first_order"]["comm_bytes"] == got["bip_fused"]["comm_bytes"] > got["hydra"]["comm_bytes"]


def test_bucket_layout_covers_the_buffer_from_the_end():
    from bip_dist.engine.score_reducer import _build_buckets
    offsets = [0, 10, 30, 35, 100]
    buckets, bucket_of = _build_buckets(offsets, 4, 25 * 4 / 2 ** 20)  # 25 elements per bucket
    assert [(lo, hi) for lo, hi, _ in buckets] == [(35, 100), (10, 35), (0, 10)]
    assert bucket_of == [2, 1, 1, 0]


def test_world_size_one_skips_ddp():
    """One rank: no DDP wrapper and no score all-reduce, and the step is the single-process step."""
    import torch.distributed as dist

    from bip_dist.engine.ddp import DDPEngine
    from bip_dist.engine.dist_env import DistEnv
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    try:
        engine = DDPEngine(E.dist_cfg(), E.PER_RANK, DistEnv())
        got = E.run("bip_paper", engine)  # the paper IG also goes through reduce_mean_
        assert engine.theta_model is engine.model and engine.reducer is None
    finally:
        dist.destroy_process_group()
    torch.manual_seed(0)
    E.assert_same_result(E.run("bip_paper", LocalEngine()), [{"bip_paper": got}], "bip_paper")
