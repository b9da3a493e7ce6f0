"""Per-layer curves of masked runs (kept fraction, score norm, score-gradient norm against steps), from the
TensorBoard scalars every masked run writes (layer_kept/, layer_score_norm/, layer_score_grad_norm/).

    python bench/collapse_curves.py RUN_DIR [RUN_DIR ...] --labels old,new --out docs/img/collapse_curves.png

One row of three panels per run; a collapse shows as kept fractions falling to 0 while a few layers' score
norms run away. Also prints, per run, the layers that end with nothing kept and the largest score norm.
"""

import argparse
import sys
from pathlib import Path

KINDS = (("layer_kept", "kept fraction"), ("layer_score_norm", "score L2 norm"),
         ("layer_score_grad_norm", "score-gradient L2 norm"))


def read_curves(run_dir):
    """{kind: {layer: (steps, values)}} from the run's tb/ folder."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    curves = {kind: {} for kind, _ in KINDS}
    for tag in acc.Tags()["scalars"]:
        kind, _, layer = tag.partition("/")
        if kind in curves:
            ev = acc.Scalars(tag)
            curves[kind][layer] = ([e.step for e in ev], [e.value for e in ev])
    return curves


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--labels", default="")
    ap.add_argument("--out", default="collapse_curves.png")
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = args.labels.split(",") if args.labels else [Path(r).name for r in args.runs]
    fig, axes = plt.subplots(len(args.runs), 3, figsize=(15, 3.6 * len(args.runs)), squeeze=False)
    for row, (run, label) in enumerate(zip(args.runs, labels)):
        curves = read_curves(run)
        kept = curves["layer_kept"]
        dead = [n for n, (_, v) in kept.items() if v and v[-1] == 0.0]
        top = max(((v[-1], n) for n, (_, v) in curves["layer_score_norm"].items() if v), default=(0, "-"))
        print(f"{label}: {len(dead)} layers end with nothing kept {dead}; largest score norm {top[0]:.1f} "
              f"({top[1]})")
        for col, (kind, title) in enumerate(KINDS):
            ax = axes[row][col]
            for layer, (steps, values) in sorted(curves[kind].items()):
                ax.plot(steps, values, lw=1, label=layer if layer in dead else None)
            ax.set_title(f"{label}: {title}", fontsize=9)
            ax.set_xlabel("step")
            if kind != "layer_kept":
                ax.set_yscale("log")
            if col == 0 and dead:
                ax.legend(fontsize=6, title="end with 0 kept", title_fontsize=6)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
