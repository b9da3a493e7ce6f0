"""`bip-export RUN_DIR|CHECKPOINT --out model.pt`: plain state_dict + JSON sparsity report."""

import argparse
import json
import sys
from pathlib import Path


def resolve_checkpoint(src):
    """A run folder means its final.pt (or the newest checkpoint if the stage did not finish)."""
    p = Path(src)
    if p.is_dir():
        if (p / "final.pt").is_file():
            return p / "final.pt"
        latest = p / "checkpoints" / "latest"
        if latest.is_file():
            return p / "checkpoints" / latest.read_text().strip()
        raise FileNotFoundError(f"{p}: no final.pt and no checkpoints/latest in this run folder")
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such run folder or checkpoint")
    return p


def load_any(path):
    """Single-file checkpoints load directly; sharded ones are consolidated without a process group."""
    if path.is_dir():
        from bip_dist.checkpoint.consolidate import consolidate, read_meta
        return {"model": consolidate(path), "meta": read_meta(path)}
    from bip_dist.checkpoint.io import load_checkpoint
    ck = load_checkpoint(path)
    if not (isinstance(ck, dict) and "model" in ck):
        raise ValueError(f"{path}: not a bip-dist training checkpoint (no 'model' entry)")
    return ck


def main(argv=None):
    p = argparse.ArgumentParser(prog="bip-export", description="Export a run or checkpoint as a plain "
                                "state_dict (masks folded into weights, no scores) plus a sparsity report.")
    p.add_argument("src", help="run folder (uses final.pt) or checkpoint file/folder")
    p.add_argument("--out", required=True, help="output .pt file")
    p.add_argument("--report", default=None, help="sparsity JSON (default: <out>.sparsity.json)")
    args = p.parse_args(argv)
    from bip_dist.export import export_checkpoint
    try:
        ck = load_any(resolve_checkpoint(args.src))
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        report = args.report or str(out.with_suffix(".sparsity.json"))
        rep = export_checkpoint(ck, out, report)
    except (FileNotFoundError, ValueError) as e:
        print(f"bip-export: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"out": str(out), "report": report, "global_sparsity": rep["global_sparsity"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
