"""The training worker: `python -m launcher.worker --config X [--set key=value [key=value ...]]`.

Started directly for one process, or by torchrun for many (it reads the rank/world variables torchrun
sets through bip_dist.engine.make_engine). Prints one line per error and exits non-zero on bad input.
A finished stage is reported, not retrained; a folder holding an unfinished earlier run needs --resume
or --overwrite; a folder in use by another process is refused (see launcher.stage, docs/checkpoints.md).
Exit statuses (bip_dist/exit_codes.py): 0 done, 2 bad input, 65 diverged, 69 a peer rank hung or lost,
75 preempted by SIGTERM / SIGUSR1 / SIGHUP, 130 interrupted by Ctrl-C (SIGINT), both after writing a
checkpoint (continue with --resume auto).
"""

import argparse
import json
import sys

from bip_dist import exit_codes
from bip_dist.config import ConfigError, load_config
from bip_dist.config.source import resolve_source_net


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bip-train", description="Train one stage (pretrain / prune / finetune) "
                                "of a BiP, HYDRA, dense or baseline experiment.")
    p.add_argument("--config", required=True, help="YAML experiment file (see configs/)")
    p.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="override config keys, e.g. --set prune.k=0.1 train.epochs=5 (repeatable)")
    p.add_argument("--resume", default=None, help="shorthand for --set ckpt.resume=VALUE ('auto' or a path)")
    p.add_argument("--overwrite", action="store_true", help="start over in a run folder that holds an earlier "
                   "run: move that run aside to .<folder>.old-<time> first")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    return p.parse_args(argv)


def main(argv=None):
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the stop signals are caught (train/preempt.py)
        print("bip-train: interrupted (SIGINT) before training started; nothing was trained", file=sys.stderr)
        return exit_codes.INTERRUPTED


def _main(argv):
    args = parse_args(argv)
    overrides = list(args.overrides)
    if args.resume is not None:
        overrides.append(f"ckpt.resume={args.resume}")
    try:
        cfg = load_config(args.config, overrides)
        if args.print_config:
            import yaml
            from bip_dist.config import config_to_dict
            print(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
            return 0
        cfg = resolve_source_net(cfg, args.config)
    except ConfigError as e:
        print(f"bip-train: {e}", file=sys.stderr)
        return exit_codes.BAD_INPUT
    if args.overwrite and cfg.ckpt.resume == "auto":
        print("bip-train: --overwrite starts over and --resume auto continues; give one of them", file=sys.stderr)
        return exit_codes.BAD_INPUT
    from bip_dist.train import preempt
    from bip_dist.train.guards import RunStopped
    from launcher.stage import StageFailed, run_here
    preempt.install()  # from here SIGTERM / SIGUSR1 / SIGHUP / SIGINT end the run with a checkpoint
    try:
        out = run_here(cfg, overwrite=args.overwrite)
    except StageFailed as e:
        if str(e):
            print(f"bip-train [rank {e.rank}]: {e}", file=sys.stderr)
        return e.exit_code
    except RunStopped as e:  # every rank stops at the same step for the same reason: rank 0 says it
        if e.rank == 0:
            print(f"bip-train [rank 0]: {e}", file=sys.stderr)
        return e.exit_code
    if out.is_main:
        if out.finished_before:
            print(f"bip-train: {out.result.get('run_dir')} has finished already; its result.json follows "
                  "(--overwrite trains it again)", file=sys.stderr)
        print(json.dumps(out.result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
