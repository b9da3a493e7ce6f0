"""Fault: the process dies after the run's last checkpoint but before final.pt. `--resume auto` must then
write what the end of a run writes: final.pt (the model of that checkpoint, with its checksum) and a
result.json carrying the last evaluation."""

import json
import os

import pytest
import torch

import bip_dist.checkpoint.trainer_state as trainer_state
from bip_dist.checkpoint.consolidate import consolidate
from bip_dist.checkpoint.layout import Layout
from tests.helpers.cli import bip_train

pytestmark = pytest.mark.usefixtures("tiny_models")


class Died(BaseException):
    pass


def test_resume_after_last_checkpoint_writes_final(tmp_path, monkeypatch):
    real = trainer_state.save_atomic

    def dying(obj, path, *a, **k):
        if os.path.basename(path) == "final.pt":
            raise Died()
        return real(obj, path, *a, **k)

    monkeypatch.setattr(trainer_state, "save_atomic", dying)
    with pytest.raises(Died):
        bip_train(tmp_path, "dense", "train.epochs=1")
    monkeypatch.setattr(trainer_state, "save_atomic", real)
    run = next(tmp_path.rglob("checkpoints")).parent
    assert not (run / "final.pt").exists() and not (run / "result.json").exists()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epoch = [r for r in records if r["kind"] == "epoch"][-1]
    assert bip_train(tmp_path, "dense", "train.epochs=1", args=["--resume", "auto"]) == 0
    final = torch.load(run / "final.pt", weights_only=True)
    last = consolidate(Layout(run / "checkpoints").newest())
    assert all(torch.equal(final["model"][k], last[k]) for k in last)
    assert (run / "final.pt.sum").is_file()
    res = json.loads((run / "result.json").read_text())
    assert res["step"] == 12 and res["val_top1"] == epoch["val_top1"] and res["val_loss"] == epoch["val_loss"]
