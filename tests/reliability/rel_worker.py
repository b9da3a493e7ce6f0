"""Shared by the reliability tests: bip-train (launcher.worker.main) run in this process on the tiny
in-memory model and data of tests/checkpoint/ckpt_helpers."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoint"))
import ckpt_helpers as H  # noqa: E402,F401


def bip_train(out, trainer, *extra, args=()):
    """Exit status of `bip-train --config <out>/c.yaml --set ... ARGS` for a short run of `trainer`; the
    loop's loaders are the fake ones for this call only."""
    import bip_dist.train.loop as loop
    from launcher.worker import main
    os.makedirs(out, exist_ok=True)
    config = os.path.join(out, "c.yaml")
    with open(config, "w") as f:
        f.write("name: ck\n")
    sets = [a for o in H.overrides(out, trainer, "log.tensorboard=false", *extra) for a in ("--set", o)]
    real, loop.build_loaders = loop.build_loaders, H.build_loaders
    try:
        return main(["--config", config, *sets, *args])
    finally:
        loop.build_loaders = real


def error_lines(err):
    """The non-empty lines a run printed on stderr, without the per-epoch progress lines."""
    return [line for line in err.splitlines() if line.strip() and not line.startswith("[epoch ")]
