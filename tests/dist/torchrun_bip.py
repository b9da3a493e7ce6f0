"""Run under torchrun by test_torchrun.py: make_engine from the torchrun variables, a few BiP steps on this
rank's shard, the mask-hash check on every refresh, and a result line per rank. Needs no dataset."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dist_helpers as H  # noqa: E402

from bip_dist.config.schema import DataConfig, ExperimentConfig  # noqa: E402
from bip_dist.engine import make_engine  # noqa: E402


def main():
    ds_config = os.path.join(os.path.dirname(__file__), "..", "..", "configs", "deepspeed", "zero1.json")
    dist = H.dist_cfg(backend=sys.argv[1] if len(sys.argv) > 1 else "ddp", ds_config=ds_config)
    engine = make_engine(ExperimentConfig(dist=dist, data=DataConfig(batch_size=H.PER_RANK)))
    out = H.run("bip_fused", engine, engine.rank, engine.world_size)  # check_masks is on in dist_cfg
    print(f"RESULT rank={engine.rank} world={engine.world_size} engine={type(engine).__name__} "
          f"hash={out['hash']!r}", flush=True)
    engine.shutdown()


if __name__ == "__main__":
    main()
