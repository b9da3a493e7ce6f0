"""Fault: corrupted or truncated checkpoint files. Every file gets a checksum when it is written; resume,
hand-over and `bip-ckpt verify` check it. `--resume auto` sets a bad latest checkpoint aside and goes on
from the newest good one; an explicit bad path stops the run with one line naming it."""

from pathlib import Path

import pytest
import torch

from bip_dist.checkpoint.layout import Layout
from tests.helpers import outputs, runs
from tests.helpers.cli import bip_train
from tests.helpers.models import CLASSES
from tests.helpers.outputs import error_lines

pytestmark = pytest.mark.usefixtures("tiny_models")


def _flip(path, at=0.5):
    b = bytearray(path.read_bytes())
    i = int(len(b) * at)
    b[i:i + 4] = bytes(x ^ 0xFF for x in b[i:i + 4])
    path.write_bytes(bytes(b))


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture
def crashed(tmp_path):
    """A BiP run with background saves killed after step 9: checkpoints of steps 4 and 6 (latest; the
    save of step 8 was still in flight)."""
    assert runs.run(runs.make_cfg(tmp_path, "bip", "ckpt.async_save=true"), crash_at=9) is None
    ck = Layout(next(tmp_path.rglob("checkpoints")))
    assert ck.newest().name == "step_00000006_ep0001"
    return tmp_path, ck


def test_flipped_shard_resume_auto_falls_back(crashed, tmp_path_factory, capsys):
    out, ck = crashed
    _flip(ck.newest() / "__0_0.distcp")
    capsys.readouterr()
    res = runs.run(runs.make_cfg(out, "bip", "ckpt.async_save=true", "ckpt.resume=auto"), record=str(out / "start.pt"))
    err = capsys.readouterr().err
    assert "step_00000006_ep0001" in err and "__0_0.distcp is corrupted" in err, err
    assert torch.load(out / "start.pt", weights_only=True)["step"] == 4  # the newest good one
    assert (ck.root / "step_00000006_ep0001.bad").is_dir()  # set aside, not deleted
    assert "__0_0.distcp is corrupted" in (ck.root.parent / "log.txt").read_text()
    ref = runs.run(runs.make_cfg(tmp_path_factory.mktemp("ref"), "bip"))
    outputs.assert_same(outputs.final_state(ref["run_dir"]), outputs.final_state(res["run_dir"]))
    from bip_dist.checkpoint.integrity import verify
    assert "match their checksums" in verify(ck.newest())  # written in the background, summed all the same


@pytest.mark.parametrize("name", ["__0_0.distcp", ".metadata"])
def test_explicit_resume_of_truncated_checkpoint_is_one_line(crashed, capsys, name):
    out, ck = crashed
    bad = ck.newest()
    _truncate(bad / name)
    capsys.readouterr()
    assert bip_train(out, "bip", "ckpt.async_save=true", args=["--resume", str(bad)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and str(bad) in lines[0] and name in lines[0], lines


def test_handover_and_verify_cli_refuse_a_corrupted_final(tmp_path, capsys):
    from bip_dist.checkpoint.handover import load_source_net, run_meta
    from bip_dist.models import build_model
    res = runs.run(runs.make_cfg(tmp_path, "dense", "train.epochs=1"))
    run = res["run_dir"]
    final = Path(run) / "final.pt"
    _flip(final, at=0.9)
    cfg = runs.make_cfg(tmp_path / "next", "bip")
    with pytest.raises(ValueError, match="final.pt is corrupted"):
        load_source_net(final, build_model("tinynet", CLASSES), run_meta(cfg, CLASSES))
    from launcher.ckpt import main
    capsys.readouterr()
    assert main(["verify", run]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("BAD") and "final.pt is corrupted" in out[0], out
    assert all(line.startswith("ok ") and "files match their checksums" in line for line in out[1:]), out
    final.unlink()
    assert main(["verify", run]) == 0
    assert main(["verify", str(tmp_path / "nope")]) == 2
