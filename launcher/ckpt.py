"""`bip-ckpt verify RUN_OR_CKPT`: check checkpoints against the checksums recorded when they were written.

A run folder (or its checkpoints/ folder) checks its final.pt and every complete checkpoint folder; a
checkpoint folder or file checks only itself. One line per checkpoint; exit status 0 when all are good,
1 when one is bad, 2 when there is nothing to check.
"""

import argparse
import sys


def verify_all(path):
    """[(checkpoint, None or what is wrong, note)] for every checkpoint `path` holds, preferred first."""
    from bip_dist.checkpoint.integrity import BadCheckpoint, verify
    from bip_dist.checkpoint.paths import candidates
    out = []
    for p in candidates(path):
        try:
            out.append((p, None, verify(p)))
        except BadCheckpoint as e:
            out.append((p, str(e), None))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(prog="bip-ckpt", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    v = sub.add_parser("verify", help="check checkpoint files against their recorded checksums")
    v.add_argument("path", help="run folder, checkpoints/ folder, checkpoint folder or final.pt")
    args = p.parse_args(argv)
    try:
        results = verify_all(args.path)
    except FileNotFoundError as e:
        print(f"bip-ckpt: {e}", file=sys.stderr)
        return 2
    if not results:
        print(f"bip-ckpt: {args.path}: holds no final.pt and no complete checkpoint", file=sys.stderr)
        return 2
    for path, bad, note in results:
        print(f"BAD  {bad}" if bad else f"ok   {path}: {note}")
    return 1 if any(bad for _, bad, _ in results) else 0


if __name__ == "__main__":
    sys.exit(main())
