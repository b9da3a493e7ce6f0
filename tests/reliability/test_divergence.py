"""A diverged run stops with one line naming the step and the quantity, exit 65, and writes nothing
non-finite (no checkpoint, final.pt or result.json); a non-finite checkpoint is refused as source_net and
by bip-export."""

import re

import pytest
import torch

from bip_dist.train.callbacks import Callback
from bip_dist.train.guards import Diverged
from tests.helpers import cli, outputs, prepared, runs
from tests.helpers.dist import spawn
from tests.helpers.models import TinyNet

pytestmark = pytest.mark.usefixtures("tiny_models")

NAN = float("nan")


class Poison(Callback):
    """Fault injection: nan input images from the start (`data`), or a nan score after step `score_at`."""

    def __init__(self, data=False, score_at=0):
        self.data, self.score_at = data, score_at

    def on_start(self, state, parts, loaders, run_dir):
        self.store = parts.store
        if self.data:
            loaders.train.x.fill_(NAN)

    def on_step(self, state, out):
        if state.step == self.score_at:
            self.store.scores[0] = NAN


def _stopped(tmp_path, trainer, *extra, poison=None):
    """Run until the guard stops it; the message, the run folder and its metrics records."""
    with pytest.raises(Diverged) as info:
        runs.run(runs.make_cfg(tmp_path, trainer, *extra), callbacks=[poison] if poison else [])
    run_dir = next(tmp_path.rglob("config.yaml")).parent
    assert not (run_dir / "final.pt").exists() and not (run_dir / "result.json").exists()
    outputs.assert_finite_checkpoints(run_dir)
    records = outputs.strict_records(run_dir / "metrics.jsonl")
    assert records[-1]["kind"] == "error" and records[-1]["error"] == f"Diverged: {info.value}"
    return str(info.value), run_dir, records


def test_huge_lr_stops_before_the_next_checkpoint(tmp_path):
    """log_every=100 never logs: the weights check before each checkpoint (every 2 steps) catches it."""
    msg, run_dir, records = _stopped(tmp_path, "dense", "optim.lr=1000000", "train.log_every=100")
    m = re.fullmatch(r"step (\d+): the weights or buffers hold (nan|inf); stopping \(the last checkpoint, "
                     r"step (\d+), is intact\)", msg)
    assert m, msg
    stopped, kept = int(m.group(1)), int(m.group(3))
    assert stopped % 2 == 0 and kept == stopped - 2  # the save it refused was the next one
    assert [p.name for p in run_dir.glob("checkpoints/step_*")] == [f"step_{kept:08d}_ep0000"]


def test_nan_loss_is_named_at_a_logging_step(tmp_path):
    msg, _, records = _stopped(tmp_path, "dense", "train.log_every=1", poison=Poison(data=True))
    assert msg == "step 1: loss_theta is nan; stopping (no checkpoint was written)"
    assert [r["kind"] for r in records] == ["error"]  # the nan step itself is not logged


def test_nan_score_is_caught_before_the_checkpoint(tmp_path):
    msg, _, _ = _stopped(tmp_path, "bip", poison=Poison(score_at=3))
    assert msg == "step 4: the scores hold nan; stopping (the last checkpoint, step 2, is intact)"


def test_a_nan_on_one_rank_stops_both(tmp_path):
    """Rank 1 alone sees nan data; both ranks stop at step 1 with the same message."""
    spawn(2, _rank1_poisoned, tmp_path, start_method="fork")
    msgs = [(tmp_path / f"stop{r}.txt").read_text() for r in range(2)]
    assert msgs[0] == msgs[1] == "step 1: loss_theta is nan; stopping (no checkpoint was written)"


def _rank1_poisoned(rank, out):
    try:
        runs.ranked_run(runs.make_cfg(out, "dense", "train.log_every=1"), callbacks=[Poison(data=rank == 1)])
    except Diverged as e:
        (out / f"stop{rank}.txt").write_text(str(e))


def _bad_checkpoint(path):
    sd = TinyNet(4).state_dict()
    sd["fc.weight"][0, 0] = NAN
    torch.save({"model": sd, "meta": {"arch": "tinynet", "mode": "pretrain"}}, path)
    return path


def test_non_finite_source_net_is_refused(tmp_path):
    bad = _bad_checkpoint(tmp_path / "final.pt")
    with pytest.raises(ValueError, match=r"final.pt: 1 of \d+ tensors hold nan or inf \(first: fc.weight\); "
                                         r"the run that wrote it diverged, refusing it$"):
        runs.run(runs.make_cfg(tmp_path, "bip", f"source_net={bad}"))


def test_non_finite_checkpoint_is_not_exported(tmp_path, capsys):
    from launcher.export import main
    out = tmp_path / "plain.pt"
    assert main([str(_bad_checkpoint(tmp_path / "final.pt")), "--out", str(out)]) == 2
    assert "fc.weight" in capsys.readouterr().err and not out.exists()


def test_bip_train_exits_65_with_one_line(tmp_path, capfd):
    data = prepared.make_digits_root(tmp_path / "data")
    proc = cli.fork_train(cli.logged_argv(tmp_path, data, "optim.lr=1000000", "train.max_steps=6",
                                     "ckpt.every_steps=2"))
    proc.join(120)
    err = capfd.readouterr().err
    assert proc.exitcode == 65, err[-3000:]
    lines = outputs.error_lines(err)
    assert len(lines) == 1, err
    assert re.fullmatch(r"bip-train \[rank 0\]: step \d+: .* (nan|inf); stopping \(.*\)", lines[0]), err
    assert not list(tmp_path.rglob("result.json")) and not list(tmp_path.rglob("final.pt"))
