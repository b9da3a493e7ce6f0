"""Faults: `--resume PATH` of a checkpoint that does not belong to this run. A checkpoint of another
arch, trainer, layer type or k, one past the run's end, or one holding nan / inf is refused with one
line naming it (exit 2), and nothing is written that its tensors contradict. A text file given as a
checkpoint is called a text file."""

import math
import shutil
from pathlib import Path

import pytest
import torch

from bip_dist.checkpoint import dcp_io
from bip_dist.checkpoint.integrity import _file_sum
from bip_dist.checkpoint.io import save_atomic
from bip_dist.checkpoint.layout import EXTRA, Layout, rank_file
from tests.helpers import runs
from tests.helpers.cli import bip_train
from tests.helpers.outputs import error_lines

pytestmark = pytest.mark.usefixtures("tiny_models")


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A finished two-epoch BiP run (k 0.5, 12 steps; checkpoints of steps 10 and 12 kept); never changed."""
    from tests.helpers import models
    with models.registered():
        res = runs.run(runs.make_cfg(tmp_path_factory.mktemp("src"), "bip"))
    return Layout(Path(res["run_dir"]) / "checkpoints")


def _refused(capsys, out, resume, *sets, trainer="bip"):
    capsys.readouterr()
    code = bip_train(out, trainer, *sets, args=["--resume", str(resume)])
    lines = error_lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, (code, lines)
    return lines[0]


@pytest.mark.parametrize("trainer, sets, field", [
    ("bip", ["prune.k=0.1"], "k"),
    ("hydra", [], "trainer"),
    ("bip", ["model.arch=tinynet_nobn"], "arch"),
    ("bip", ["prune.layer_type=channel"], "layer_type"),
])
@pytest.mark.parametrize("which", ["folder", "final.pt"])
def test_resume_from_another_configuration_names_the_field(source, tmp_path, capsys, trainer, sets, field, which):
    ck = source.newest() if which == "folder" else source.root.parent / "final.pt"
    line = _refused(capsys, tmp_path, ck, *sets, trainer=trainer)
    assert f"{ck}: the checkpoint's {field} is " in line and "this run has" in line, line
    assert not list(tmp_path.rglob("final.pt")) and not list(tmp_path.rglob("result.json"))


def test_resume_past_the_end_is_refused(source, tmp_path, capsys):
    mid = source.root / "step_00000010_ep0001"  # mid-epoch: no evaluation
    line = _refused(capsys, tmp_path, mid, "train.max_steps=6")
    assert line.endswith(f"{mid}: the checkpoint is at step 10 (epoch 1), past this run's end (step 6: "
                         "train.max_steps=6, train.epochs=2); nothing is left to train: raise train.max_steps "
                         "or train.epochs, or use the checkpoint as it is"), line
    line = _refused(capsys, tmp_path, source.root / "step_00000012_ep0002", "train.epochs=1")
    assert "past this run's end (step 6" in line, line
    assert not list(tmp_path.rglob("final.pt")) and not list(tmp_path.rglob("result.json"))


def test_resume_at_the_end_says_it_is_finished(source, tmp_path, capsys):
    """Another learning rate, the same end: the checkpoint's own evaluation becomes this run's result."""
    capsys.readouterr()
    assert bip_train(tmp_path, "bip", "optim.lr=0.01", args=["--resume", str(source.newest())]) == 0
    assert "step_00000012_ep0002 is at this run's end (step 12); nothing to train" in capsys.readouterr().err
    import json
    res = json.loads(next(tmp_path.rglob("result.json")).read_text())
    assert res["step"] == 12 and "val_top1" in res


def _poisoned_folder(good, out):
    """A copy of the checkpoint folder `good` whose first weight holds a nan, checksums rewritten."""
    flat = dcp_io.load_flat(good)
    key = next(k for k in flat if k.endswith("conv1.weight"))
    flat[key].view(-1)[0] = math.nan
    out.mkdir()
    for name in (EXTRA, rank_file(0)):
        shutil.copy(good / name, out / name)
    dcp_io.save_flat(flat, out, beside={n: _file_sum(out / n) for n in (EXTRA, rank_file(0))})
    return out, key


def test_resume_of_a_non_finite_folder_is_refused(source, tmp_path, capsys):
    bad, key = _poisoned_folder(source.newest(), tmp_path / "step_00000012_ep0002")
    line = _refused(capsys, tmp_path / "run", bad)
    assert line.endswith(f"{bad}: 1 of {len(dcp_io.entries(bad))} tensors hold nan or inf (first: {key}); the run "
                         "that wrote it diverged, refusing it"), line


def test_resume_of_a_non_finite_final_is_refused(source, tmp_path, capsys):
    ck = torch.load(source.root.parent / "final.pt", weights_only=True)
    ck["weight_opt"]["state"][0]["momentum_buffer"].view(-1)[0] = math.inf
    bad = tmp_path / "final.pt"
    save_atomic(ck, bad, sidecar=True)
    line = _refused(capsys, tmp_path / "run", bad)
    assert f"{bad}: 1 of " in line and "(first: weight_opt.0.momentum_buffer)" in line, line


@pytest.mark.parametrize("text", ["model: resnet20s\n", "# notes\n", "hello world\n", "arch=resnet20s\n"])
def test_text_file_as_source_net_is_called_a_text_file(tmp_path, capsys, text):
    path = tmp_path / "final.pt"
    path.write_text(text)
    capsys.readouterr()
    assert bip_train(tmp_path, "finetune", f"source_net={path}") == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and lines[0].endswith(
        f"{path}: not a loadable checkpoint (a text file ({text.strip()!r} ...), not a torch.save archive)"), lines
