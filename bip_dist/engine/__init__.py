"""Execution engines: how forward passes are wrapped and gradients reduced.

Trainers talk only to this interface, so rank, world size, DDP and DeepSpeed never appear in algorithm code.
"""

from bip_dist.engine.local import LocalEngine


def make_engine(cfg):
    """LocalEngine for one process; the distributed engine of `cfg.dist.backend` under torchrun."""
    from bip_dist.engine.dist_env import DistEnv
    env = DistEnv.from_environ()
    if env.device() == "cpu":
        from bip_dist.engine.host_memory import keep_freed_memory
        keep_freed_memory()
    if env.world_size == 1 and cfg.dist.backend == "ddp":
        engine = LocalEngine
    elif cfg.dist.backend == "deepspeed":
        from bip_dist.engine.deepspeed_engine import DeepSpeedEngine as engine
    else:
        from bip_dist.engine.ddp import DDPEngine as engine
    return engine(cfg.dist, cfg.data.batch_size, env)


__all__ = ["LocalEngine", "make_engine"]
