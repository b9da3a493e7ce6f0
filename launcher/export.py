"""`bip-export RUN_DIR|CHECKPOINT --out model.pt`: plain state_dict + JSON sparsity report.

The source is any path checkpoint.locate accepts (a run folder means its final.pt, else its newest
checkpoint).
"""

import argparse
import json
import sys
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser(prog="bip-export", description="Export a run or checkpoint as a plain "
                                "state_dict (masks folded into weights, no scores) plus a sparsity report.")
    p.add_argument("src", help="run folder (its final.pt, else its newest checkpoint), checkpoints/ folder, "
                   "checkpoint folder or file")
    p.add_argument("--out", required=True, help="output .pt file")
    p.add_argument("--report", default=None, help="sparsity JSON (default: <out>.sparsity.json)")
    args = p.parse_args(argv)
    from bip_dist.checkpoint.consolidate import load_model
    from bip_dist.export import export_checkpoint
    try:
        ck = load_model(args.src)
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
