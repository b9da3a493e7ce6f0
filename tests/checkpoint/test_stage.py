"""launcher.stage: the one in-process stage runner (engine always shut down) and torchrun command builder."""

import pytest

from launcher import stage


def test_commands():
    assert stage.stage_command("c.yaml", ["a=1"], 1, python="py") == \
        ["py", "-m", "launcher.worker", "--config", "c.yaml", "--set", "a=1"]
    assert stage.stage_command("c.yaml", ["a=1"], 2, python="py") == \
        ["py", "-m", "torch.distributed.run", "--nproc-per-node", "2", "--standalone",
         "-m", "launcher.worker", "--config", "c.yaml", "--set", "a=1"]
    cmd = stage.torchrun_command(["--config", "c.yaml"], 4, nnodes=2, endpoint="h:1", rdzv_id="7",
                                 max_restarts=3, python="py")
    assert cmd[:7] == ["py", "-m", "torch.distributed.run", "--nproc-per-node", "4", "--max-restarts", "3"]
    assert cmd[cmd.index("--rdzv-endpoint") + 1] == "h:1" and cmd[-4:] == ["-m", "launcher.worker",
                                                                           "--config", "c.yaml"]
    with pytest.raises(ValueError, match="--rdzv-endpoint"):
        stage.torchrun_command([], 1, nnodes=2)


class _Engine:
    rank, is_main, shut, device = 1, False, 0, "cpu"  # not main: no monitors to build, no folder to claim

    def all_reduce_sum(self, t):
        return t

    def shutdown(self):
        self.shut += 1


@pytest.mark.parametrize("error", [None, ValueError("bad value"), RuntimeError("crash")])
def test_run_here_shuts_the_engine_down(tmp_path, monkeypatch, error):
    import bip_dist.engine as engine_mod
    import bip_dist.train.loop as loop
    eng = _Engine()
    monkeypatch.setattr(engine_mod, "make_engine", lambda cfg: eng)

    def fake_train(cfg, engine, **kw):
        if error is not None:
            raise error
        return {"step": 1}

    monkeypatch.setattr(loop, "train", fake_train)
    from bip_dist.config import load_config
    cfg = load_config(None, [f"out_dir={tmp_path}", "train.progress=false"])
    if error is None:
        assert stage.run_here(cfg).result == {"step": 1}
    else:
        with pytest.raises(stage.StageFailed if isinstance(error, ValueError) else RuntimeError, match=str(error)):
            stage.run_here(cfg)
    assert eng.shut == 1
