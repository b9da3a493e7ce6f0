"""Run under torchrun by test_torchrun.py: make_engine from the torchrun variables, a few BiP steps on this
rank's shard, the mask-hash check on every refresh, and a result line per rank. Needs no dataset.

usage: torchrun ... -m tests.dist.torchrun_bip [ddp|deepspeed]   (PYTHONPATH: the repository root)
"""

import sys

from bip_dist.config.schema import DataConfig, ExperimentConfig
from bip_dist.engine import make_engine
from tests.helpers import ROOT
from tests.helpers import equivalence as E


def main(backend):
    ds_config = str(ROOT / "configs" / "deepspeed" / "zero1.json")
    dist = E.dist_cfg(backend=backend, ds_config=ds_config)
    engine = make_engine(ExperimentConfig(dist=dist, data=DataConfig(batch_size=E.PER_RANK)))
    out = E.run("bip_fused", engine, engine.rank, engine.world_size)  # check_masks is on in dist_cfg
    print(f"RESULT rank={engine.rank} world={engine.world_size} engine={type(engine).__name__} "
          f"hash={out['hash']!r}", flush=True)
    engine.shutdown()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "ddp")
