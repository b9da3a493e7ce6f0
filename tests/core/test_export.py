"""Export: plain state_dict with zeros where pruned, loads strictly into the registry model."""

import json

import pytest
import torch

from bip_dist.export import export_checkpoint
from bip_dist.models import build_model
from bip_dist.pruning import ScoreStore, make_prunable


def test_export_roundtrip(tmp_path):
    torch.manual_seed(0)
    model = make_prunable(build_model("resnet20s", 10), "unstructured")
    store = ScoreStore(model, 0.1, "unstructured")
    store.init_scores("magnitude")
    store.refresh_mask()
    model.eval()
    x = torch.randn(4, 3, 32, 32)
    expect = model(x)
    rep = export_checkpoint({"model": model.state_dict(), "meta": {"arch": "resnet20s"}},
                            tmp_path / "m.pt", tmp_path / "m.json")
    plain = torch.load(tmp_path / "m.pt", weights_only=True)
    assert not any(k.endswith((".scores", ".mask")) for k in plain)
    dense = build_model("resnet20s", 10).eval()
    dense.load_state_dict(plain, strict=True)
    torch.testing.assert_close(dense(x), expect)
    assert rep["global_sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert json.loads((tmp_path / "m.json").read_text())["global_sparsity"] == rep["global_sparsity"]


def test_export_cli_errors(tmp_path, capsys):
    from launcher.export import main
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "o.pt")]) == 2
    assert "no such run folder or checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "--out", str(tmp_path / "o.pt")]) == 2
    assert "not a loadable checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o.pt").exists()
