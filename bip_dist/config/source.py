"""The `<hash>` placeholder of source_net: `runs/NAME/pretrain/<hash>/final.pt` in a stage config stands for
the run folder of the previous stage, whose name (the hash of its settings) is only known once it ran."""

import dataclasses
import glob
from pathlib import Path

from bip_dist.config.files import ConfigError

PLACEHOLDER = "<hash>"


def resolve_source_net(cfg, src="config"):
    """`cfg` with a `<hash>` in source_net replaced by the one run folder holding that file; a one-line
    ConfigError naming the candidates when there is none or more than one."""
    path = cfg.source_net
    if PLACEHOLDER not in path:
        return cfg
    pattern = glob.escape(path).replace(glob.escape(PLACEHOLDER), "*")
    found = sorted(glob.glob(pattern))
    if len(found) == 1:
        return dataclasses.replace(cfg, source_net=found[0])
    if not found:
        raise ConfigError(f"{src}: source_net = {path!r}: no run has written that file yet; run the previous "
                          f"stage first, or --set source_net=PATH")
    at = next(i for i, part in enumerate(Path(path).parts) if PLACEHOLDER in part)
    names = ", ".join(Path(f).parts[at] for f in found)
    raise ConfigError(f"{src}: source_net = {path!r}: {len(found)} runs match ({names}); choose one with "
                      f"--set source_net=PATH")
