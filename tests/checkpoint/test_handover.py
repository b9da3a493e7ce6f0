"""Stage hand-over from sharded checkpoint folders and final.pt: the next stage starts from the previous
one's weights (and mask for finetune), and a mismatched source fails with one line naming the field."""

import os

import pytest
import torch

from bip_dist.checkpoint.consolidate import consolidate, read_meta
from bip_dist.checkpoint.handover import HandoverError, load_source_net, run_meta
from bip_dist.checkpoint.layout import Layout
from bip_dist.models import build_model
from bip_dist.pruning import make_prunable
from tests.helpers import models, runs
from tests.helpers.models import CLASSES

pytestmark = pytest.mark.usefixtures("tiny_models")


@pytest.fixture(scope="module")
def stages(tmp_path_factory):
    """A dense pretrain run and a BiP prune run from it (1 epoch each): their newest folders."""
    root = tmp_path_factory.mktemp("stages")
    with models.registered():  # a module-wide fixture runs outside any test's tiny_models
        pre = runs.run(runs.make_cfg(root, "dense", "train.epochs=1"))
        pre_dir = Layout(os.path.join(pre["run_dir"], "checkpoints")).newest()
        bip = runs.run(runs.make_cfg(root, "bip", "train.epochs=1", f"source_net={pre_dir}"))
    return pre_dir, Layout(os.path.join(bip["run_dir"], "checkpoints")).newest(), bip["run_dir"], root


def _want(cfg_over, root):
    cfg = runs.make_cfg(root, *cfg_over)
    return run_meta(cfg, cfg.model.num_classes or CLASSES)  # as build_parts does


def test_prune_starts_from_pretrain_folder(stages):
    pre_dir, _, _, root = stages
    model = make_prunable(build_model("tinynet", CLASSES), "unstructured")
    assert load_source_net(pre_dir, model, _want(["bip"], root)) is False  # weights only, no masks
    src = consolidate(pre_dir)
    assert torch.equal(model.state_dict()["conv1.weight"], src["conv1.weight"])
    assert read_meta(pre_dir)["mode"] == "pretrain"


def test_finetune_runs_from_prune_folder(stages, tmp_path):
    _, prune_dir, _, _ = stages
    rec = tmp_path / "start.pt"
    res = runs.run(runs.make_cfg(tmp_path, "finetune", "mode=finetune", "train.epochs=1", f"source_net={prune_dir}"),
                record=str(rec))
    start, src = torch.load(rec, weights_only=True), consolidate(prune_dir)
    assert torch.equal(start["model"]["conv2.mask"], src["conv2.mask"])  # mask of the prune stage
    assert res["step"] == 12


@pytest.mark.parametrize("which, over, field", [
    ("pre", ["bip", "model.num_classes=5"], "num_classes"),
    ("pre", ["bip", "data.dataset=cifar100"], "dataset"),
    ("prune", ["finetune", "mode=finetune", "prune.k=0.3"], "k"),
    ("prune", ["finetune", "mode=finetune", "prune.layer_type=filter"], "layer_type"),
    ("pre", ["finetune", "mode=finetune"], "dense"),
    ("final", ["finetune", "mode=finetune", "prune.k=0.3"], "k"),
])
def test_mismatch_names_the_field(stages, which, over, field):
    pre_dir, prune_dir, prune_run, root = stages
    src = {"pre": pre_dir, "prune": prune_dir, "final": os.path.join(prune_run, "final.pt")}[which]
    want = _want(over, root)
    model = make_prunable(build_model("tinynet", want["num_classes"]), "unstructured")
    with pytest.raises(HandoverError) as e:
        load_source_net(src, model, want)
    msg = str(e.value)
    assert field in msg and str(src) in msg and "\n" not in msg


def test_arch_mismatch(stages, monkeypatch):
    pre_dir, _, _, root = stages
    want = dict(_want(["bip"], root), arch="resnet20s")
    with pytest.raises(HandoverError, match="arch is 'tinynet', this run has 'resnet20s'"):
        load_source_net(pre_dir, build_model("resnet20s", CLASSES), want)
