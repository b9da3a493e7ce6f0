"""The one place that reads the launcher's rank/world variables (torchrun, or SLURM via srun)."""

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @staticmethod
    def from_environ(environ=None):
        e = os.environ if environ is None else environ

        def get(*names, default=None):
            for n in names:
                if n in e and e[n] != "":
                    return int(e[n])
            return default
        world = get("WORLD_SIZE", "SLURM_NTASKS", default=1)
        rank = get("RANK", "SLURM_PROCID", default=0)
        local = get("LOCAL_RANK", "SLURM_LOCALID", default=0)
        local_world = get("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", default=1)
        if not 0 <= rank < world:
            raise ValueError(f"RANK={rank} is outside WORLD_SIZE={world}")
        return DistEnv(rank, local, world, local_world)

    @property
    def is_main(self):
        return self.rank == 0

    def device(self):
        if torch.cuda.is_available():
            return f"cuda:{self.local_rank % torch.cuda.device_count()}"
        return "cpu"

    def backend(self):
        """nccl on GPU, gloo on CPU."""
        return "nccl" if torch.cuda.is_available() else "gloo"
