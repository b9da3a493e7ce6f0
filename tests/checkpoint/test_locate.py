"""checkpoint.locate: one reading of a path for resume, source_net, export, compact and consolidate; and
the one loader of model plus meta they share."""

import os

import pytest
import torch

from bip_dist.checkpoint.consolidate import load_model
from bip_dist.checkpoint.layout import Layout
from bip_dist.checkpoint.paths import candidates, locate
from tests.helpers import runs


def _fake_run(root, steps=(2, 4, 6), final=True):
    ck = root / "checkpoints"
    for s in steps:
        d = ck / f"step_{s:08d}_ep0000"
        d.mkdir(parents=True)
        (d / ".metadata").write_bytes(b"")
        (d / "extra.pt").write_bytes(b"")
    (ck / ".step_00000008_ep0000.tmp").mkdir()
    if final:
        (root / "final.pt").write_bytes(b"")
    return ck


def test_locate_rules(tmp_path):
    ck = _fake_run(tmp_path)
    Layout(ck).write_pointer("latest", "step_00000004_ep0000")
    assert locate(tmp_path) == tmp_path / "final.pt"  # a run folder: its final.pt ...
    assert candidates(tmp_path)[1:] == [ck / "step_00000004_ep0000", ck / "step_00000006_ep0000",
                                        ck / "step_00000002_ep0000"]  # ... then `latest`, then newest first
    assert locate(ck) == ck / "step_00000004_ep0000"
    assert locate(ck / "step_00000002_ep0000") == ck / "step_00000002_ep0000"
    assert locate(tmp_path / "final.pt") == tmp_path / "final.pt"
    (tmp_path / "final.pt").unlink()
    assert locate(tmp_path) == ck / "step_00000004_ep0000"
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint"):
        locate(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="holds no final.pt and no complete checkpoint"):
        locate(ck / ".step_00000008_ep0000.tmp")


@pytest.mark.usefixtures("tiny_models")
def test_every_consumer_takes_a_run_folder(tmp_path):
    """export, consolidate, compact's loader and source_net read the same model from a run folder, its
    checkpoints/ folder and final.pt; a bare state_dict loads with meta None."""
    res = runs.run(runs.make_cfg(tmp_path, "bip", "train.epochs=1"))
    run = res["run_dir"]
    models = [load_model(p)["model"] for p in (run, os.path.join(run, "checkpoints"),
                                                 os.path.join(run, "final.pt"))]
    for m in models[1:]:
        assert m.keys() == models[0].keys() and all(torch.equal(m[k], models[0][k]) for k in m)
    from launcher.consolidate import main as consolidate_main
    from launcher.export import main as export_main
    bare = tmp_path / "bare.pt"
    assert consolidate_main([run, "--out", str(bare)]) == 0
    assert load_model(bare)["meta"] is None
    assert export_main([os.path.join(run, "checkpoints"), "--out", str(tmp_path / "e.pt")]) == 0
    from launcher.compact import load_masked
    with pytest.raises(ValueError, match="layer_type is 'unstructured'"):
        load_masked(run)
    with pytest.raises(ValueError, match="bare state_dict"):
        load_masked(bare)
