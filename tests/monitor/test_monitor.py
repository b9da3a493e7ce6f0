"""TensorBoard scalars, progress bar and metrics file of a short end-to-end BiP run."""

import json
from pathlib import Path

import pytest
import torch

from bip_dist.engine import LocalEngine
from bip_dist.monitor import StepMeter, monitors_for
from bip_dist.train.state import TrainState
from tests.helpers import runs

EXPECTED = ["train/loss_theta", "train/top1_theta", "train/loss_score", "train/top1_score", "lr/theta",
            "lr/score", "mask/flip_rate", "score/grad_norm", "time/data", "time/theta", "time/score",
            "time/comm", "time/mask", "time/step", "perf/images_per_s", "perf/peak_mem_mb",
            "sparsity/global", "val/top1", "val/top5", "val/loss"]


@pytest.fixture
def bip_run(tmp_path, tiny_models, capsys):
    # 6 BiP steps per epoch (batch 8, two streams), 2 epochs
    cfg = runs.tiny_cfg(tmp_path, "train.log_every=2", "name=mon", "mode=prune", "trainer=bip",
                        "prune.layer_type=unstructured", "prune.k=0.3", "prune.from_scratch=true",
                        "train.progress=true")
    engine = LocalEngine()
    result = runs.run(cfg, engine, callbacks=monitors_for(cfg, engine))
    return cfg, Path(result["run_dir"]), capsys.readouterr().err


def test_tensorboard_scalars(bip_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg, run_dir, _ = bip_run
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    missing = [t for t in EXPECTED if t not in tags]
    assert not missing, missing
    layer_tags = [t for t in tags if t.startswith("sparsity/layer/")]
    assert len(layer_tags) == 3  # conv1, conv2, fc
    # 12 steps, log_every 2 -> 6 window means; val after each of the 2 epochs
    assert [e.step for e in acc.Scalars("train/loss_theta")] == [2, 4, 6, 8, 10, 12]
    assert len(acc.Scalars("val/top1")) == 2
    assert acc.Scalars("sparsity/global")[-1].value == pytest.approx(0.7, abs=0.01)
    assert all(e.value > 0 for e in acc.Scalars("perf/peak_mem_mb"))


def test_progress_and_metrics_file(bip_run):
    cfg, run_dir, err = bip_run
    assert "epoch 1/2" in err and "epoch 2/2" in err and "img/s" in err and "eta_run" in err
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["kind"] == "train"]
    epochs = [r for r in recs if r["kind"] == "epoch"]
    assert len(train) == 6 and len(epochs) == 2
    assert all(r["images_per_s"] > 0 and "peak_mem_mb" in r for r in train)
    assert all(r["peak_mem_mb"] > 0 and r["train_images_per_s"] > 0 and "val_top1" in r for r in epochs)
    assert "peak_mem_mb=" in (run_dir / "log.txt").read_text()


def test_monitors_off_and_other_ranks(tmp_path, tiny_models):
    cfg = runs.tiny_cfg(tmp_path, "log.tensorboard=false")
    assert [type(c).__name__ for c in monitors_for(cfg, LocalEngine())] == ["StepMeter"]

    class Rank1(LocalEngine):
        rank, is_main = 1, False
    assert monitors_for(cfg, Rank1()) == []


def test_meter_window_means():
    meter = StepMeter(every=2, device="cpu", world_size=2)
    state = TrainState()
    for i in range(4):
        state.step += 1
        out = {"loss_theta": torch.tensor(float(i)), "correct_theta": torch.tensor(i), "n_theta": 4,
               "time_step": 0.5, "time_theta": 0.25, "mask_flips": 0.1 * i}
        meter.on_step(state, out)
        assert out["images_per_s"] == pytest.approx(2 * 4 / 0.5)
        assert meter.fresh == (i % 2 == 1)
    last = meter.last  # window of steps 3 and 4
    assert last["loss_theta"] == pytest.approx(2.5)
    assert last["top1_theta"] == pytest.approx(100 * 5 / 8)
    assert last["mask_flips"] == pytest.approx(0.25)
    assert last["images_per_s"] == pytest.approx(16.0)


def test_untimed_step_parts_leave_the_means():
    """On CUDA only logging steps are timed (laps None elsewhere); their parts average over timed steps."""
    from bip_dist.engine.local import _Timer
    assert _Timer(cuda=True, exact=False).lap() is None
    assert _Timer(cuda=False, exact=False).lap() == 0.0  # the CPU needs no wait: every step is timed
    meter = StepMeter(every=3, device="cpu")
    state = TrainState()
    for t in (None, None, 0.3):
        state.step += 1
        meter.on_step(state, {"time_step": 0.5, "time_theta": t, "n_theta": 1})
    assert meter.last["time_theta"] == pytest.approx(0.3) and meter.last["time_step"] == pytest.approx(0.5)


def test_crash_is_logged_and_monitors_flushed(tmp_path, tiny_models):
    """A run that dies still leaves its last scalars on disk and says what stopped it."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from bip_dist.train.callbacks import Callback

    class Boom(Callback):
        def on_step(self, state, out):
            if state.step == 5:
                raise FloatingPointError("loss is nan")

    cfg = runs.tiny_cfg(tmp_path, "train.log_every=2", "name=crash", "mode=prune", "trainer=hydra",
                        "prune.layer_type=unstructured", "prune.k=0.5", "prune.from_scratch=true")
    engine = LocalEngine()
    with pytest.raises(FloatingPointError):
        runs.run(cfg, engine, callbacks=monitors_for(cfg, engine) + [Boom()])
    run_dir = next(tmp_path.glob("crash/prune/*"))
    recs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert recs[-1]["kind"] == "error" and recs[-1]["step"] == 5
    assert recs[-1]["error"] == "FloatingPointError: loss is nan"
    assert "step=5 epoch=0 stopped by FloatingPointError: loss is nan" in (run_dir / "log.txt").read_text()
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert [e.step for e in acc.Scalars("train/loss_score")] == [2, 4]
