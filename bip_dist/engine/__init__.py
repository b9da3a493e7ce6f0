"""Execution engines: how forward passes are wrapped and gradients reduced.

Trainers talk only to this interface, so rank, world size, DDP and DeepSpeed never appear in algorithm code.
"""

from bip_dist.engine.local import LocalEngine


def make_engine(cfg):
    """LocalEngine for one process; the distributed engine of `cfg.dist.backend` under torchrun."""
    from bip_dist.engine.dist_env import DistEnv
    env = DistEnv.from_environ()
    device = env.device()
    if device == "cpu":
        from bip_dist.engine.host_memory import keep_freed_memory
        keep_freed_memory()
    if env.world_size == 1 and cfg.dist.backend == "ddp":
        return LocalEngine(device, cfg.dist.precision, cfg.dist.channels_last)
    if cfg.dist.backend == "deepspeed":
        from bip_dist.engine.deepspeed_engine import DeepSpeedEngine
        return DeepSpeedEngine(env, cfg)
    from bip_dist.engine.ddp import DDPEngine
    return DDPEngine(env, cfg)


__all__ = ["LocalEngine", "make_engine"]
