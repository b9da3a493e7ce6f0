"""`python -m launcher.consolidate CKPT --out FILE`: a sharded (or single-file) checkpoint as one plain
model state_dict, with no process group and any number of processes that wrote it."""

import argparse
import json
import sys
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(prog="bip-consolidate", description="Write the model state_dict (weights, "
                                "scores, masks) of a checkpoint folder, single-file checkpoint or run folder "
                                "as one torch.save file.")
    p.add_argument("ckpt", help="checkpoint folder, final.pt, checkpoints/ folder, or a run folder (its "
                   "final.pt, else its newest checkpoint)")
    p.add_argument("--out", required=True, help="output .pt file")
    p.add_argument("--with-meta", action="store_true", help="write {'model': ..., 'meta': ...} instead of "
                   "the bare state_dict (what bip-export and source_net accept with the hand-over checks)")
    args = p.parse_args(argv)
    import torch
    from bip_dist.checkpoint.consolidate import load_model
    from bip_dist.checkpoint.io import save_atomic
    try:
        ck = load_model(args.ckpt)
        src, state = ck["path"], ck["model"]
        obj = {"model": state, "meta": ck["meta"] or {}} if args.with_meta else state
    except (FileNotFoundError, ValueError) as e:
        print(f"bip-consolidate: {e}", file=sys.stderr)
        return 2
    save_atomic(obj, Path(args.out))
    n = sum(t.numel() for t in state.values() if torch.is_tensor(t))
    print(json.dumps({"src": str(src), "out": args.out, "tensors": len(state), "elements": n}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
