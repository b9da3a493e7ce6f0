"""Which score formulation keeps BiP alive at high sparsity: candidates side by side, chosen on the holdout.

    python bench/score_formulation.py --configs configs/digits --source runs/sel/pretrain/<hash>/final.pt \
        --ks 0.1,0.035,0.01 --set data.holdout=300 train.epochs=2

Runs `<configs>/bip.yaml` (or --trainer's file) once per candidate and k from one pretrained model, each in
its own run folder (a finished one is reused), and writes a table of holdout top-1 (the selection split),
the number of layers left with no kept weight and the largest layer score norm, to
bench/score_formulation.{json,md}. Test (val) accuracy is recorded in the JSON but not printed: settings are
chosen on the holdout only.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

# An analysis switch, not an option of the product: the score gradient of pruned entries is zeroed (the
# layers' straight-through estimator passes it on unchanged), to see whether revival signals drive the runaway.
NO_STE = "no_ste"


def _patch_no_ste():
    from bip_dist.pruning import layers
    base = layers._MaskedWeight.backward

    def backward(ctx, g):
        gw, gs, none = base(ctx, g)
        mask = ctx.saved_tensors[2]
        return gw, None if gs is None else gs * mask, none
    layers._MaskedWeight.backward = staticmethod(backward)
    return lambda: setattr(layers._MaskedWeight, "backward", staticmethod(base))


# Each candidate is a list of overrides on top of the stage config. The old default is spelled out so that
# the table keeps its meaning when the defaults change.
OLD = ["prune.score_init=magnitude", "prune.scope=global", "score_optim.normalize=none", "score_optim.lr=0.1"]
CANDIDATES = {
    "old default (magnitude, global)": OLD,
    "old, score lr 0.01": OLD[:-1] + ["score_optim.lr=0.01"],
    "old, no momentum": OLD + ["score_optim.momentum=0"],
    "old, no STE gradient to pruned weights": OLD + [NO_STE],
    "(a) shared": OLD + ["prune.score_init=shared"],
    "(b) abs(w), global, lr 0.01": ["prune.score_init=abs", "prune.scope=global", "score_optim.normalize=none",
                                 "score_optim.lr=0.01"],
    "(c) layerwise uniform": OLD[:1] + ["prune.scope=layerwise", "prune.budget=uniform",
                                        "score_optim.normalize=none", "score_optim.lr=0.1"],
    "(c) layerwise ERK": OLD[:1] + ["prune.scope=layerwise", "prune.budget=erk", "score_optim.normalize=none",
                                    "score_optim.lr=0.1"],
    "(d) normalized, global, lr 0.01": ["prune.score_init=magnitude", "prune.scope=global",
                                        "score_optim.normalize=layer", "score_optim.lr=0.01"],
    "(c)+(d) ERK, normalized, lr 0.01": ["prune.score_init=magnitude", "prune.scope=layerwise",
                                         "prune.budget=erk", "score_optim.normalize=layer", "score_optim.lr=0.01"],
}


def dead_layers(final_pt):
    """(layers whose mask keeps nothing, largest per-layer score L2 norm) of a finished run."""
    state = torch.load(final_pt, map_location="cpu", weights_only=True)
    model = state.get("model", state)
    masks = {k[:-5]: v for k, v in model.items() if k.endswith(".mask")}
    scores = [v.norm().item() for k, v in model.items() if k.endswith(".scores")]
    return sorted(n for n, m in masks.items() if m.sum() == 0), max(scores) if scores else float("nan")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="configs/digits")
    ap.add_argument("--trainer", default="bip", help="stage file: bip, hydra or bip_first_order")
    ap.add_argument("--source", required=True, help="the pretrained model (final.pt)")
    ap.add_argument("--ks", default="0.1,0.035,0.01")
    ap.add_argument("--only", default="", help="candidate labels separated by ; (default: all)")
    ap.add_argument("--name", default="score_formulation")
    ap.add_argument("--out", default="bench/score_formulation")
    ap.add_argument("--set", nargs="*", default=[], help="overrides for every run")
    args = ap.parse_args(argv)
    from launcher.stage import run_or_reuse

    ks = [float(k) for k in args.ks.split(",")]
    labels = [c for c in CANDIDATES if not args.only or c in args.only.split(";")]
    rows = []
    for label in labels:
        for k in ks:
            cand = [o for o in CANDIDATES[label] if o != NO_STE]
            no_ste = NO_STE in CANDIDATES[label]
            name = args.name + ("_no_ste" if no_ste else "")  # its own run folders: the config is the same
            over = [f"name={name}", f"source_net={args.source}", f"prune.k={k}", "train.progress=false",
                    *cand, *args.set]
            undo = _patch_no_ste() if no_ste else None
            try:
                res, secs = run_or_reuse(f"{args.configs}/{args.trainer}.yaml", over, 1, in_process=True,
                                         tag="select", label=label)
            finally:
                if undo:
                    undo()
            dead, top_norm = dead_layers(Path(res["run_dir"]) / "final.pt")
            rows.append({"candidate": label, "k": k, "holdout_top1": res.get("holdout_top1"),
                         "val_top1": res.get("val_top1"), "dead_layers": dead, "max_layer_score_norm": top_norm,
                         "run_dir": res["run_dir"]})
            print(f"{label:40s} k={k:<6} holdout={res.get('holdout_top1')} dead={len(dead)}", flush=True)
    Path(args.out + ".json").write_text(json.dumps(rows, indent=1))
    lines = ["| candidate | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for label in labels:
        cells = []
        for k in ks:
            r = next(r for r in rows if r["candidate"] == label and r["k"] == k)
            cells.append(f"{r['holdout_top1']:.2f} ({len(r['dead_layers'])} dead)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
