"""`bip-sweep`: accuracy vs sparsity of several pruning methods from one pretrained model (the BiP paper's
Figure 3 for any model and dataset).

    bip-sweep --configs configs/digits --methods bip,hydra,omp,imp --ks 0.41,0.2097,0.1074,0.055

For each method and remaining ratio k it runs the method's stages with the training loop, each in its own
run folder (named by the config hash), and skips every stage whose result.json already exists, so an
interrupted sweep resumes where it stopped. Stages per point:
    bip     <configs>/bip.yaml (+ finetune.yaml with --finetune-bip; the paper finds BiP needs none)
    bip_first_order  bip_first_order.yaml (first-order BiP, experimental; --finetune-bip applies too)
    hydra   hydra.yaml (scores only) -> finetune.yaml
    omp     omp.yaml (magnitude mask of the pretrained weights, then weight training)
    random  random.yaml
    imp     imp.yaml once per IMP round (20% of the survivors each), rewinding to the pretrain's rewind.pt
A variant (--variant LABEL=METHOD) runs a method again as a method of its own named LABEL, with LABEL's
own --stage-set overrides: e.g. first-order BiP at two epoch budgets beside exact BiP.
Writes <out_dir>/<name>/sweep/results.csv, results.json and accuracy_vs_sparsity.png.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

from launcher.stage import StageStopped, run_or_reuse

LTH_SERIES = [0.8, 0.64, 0.512, 0.41, 0.328, 0.262, 0.2097, 0.1678, 0.1342, 0.1074, 0.0859, 0.0687, 0.055,
              0.044, 0.035, 0.028, 0.0225, 0.018, 0.0144, 0.0115, 0.0092]
STRUCTURED_SERIES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
METHODS = ("bip", "bip_first_order", "hydra", "omp", "imp", "random")
# The method as the reference code runs it: <configs>/<method>.yaml (docs/fidelity.md).
REFERENCE_METHODS = ("bip_reference", "hydra_reference")


class Sweep:
    """Runs stages (in this process, or under torchrun with --nproc > 1) and remembers their results."""

    def __init__(self, args):
        self.args = args
        self.common = [f"out_dir={args.out_dir}", f"name={args.name}",
                       f"train.progress={'true' if args.progress else 'false'}", *args.set]
        self.per_stage = {}
        for item in args.stage_set:  # "bip:train.epochs=4"
            stage, _, kv = item.partition(":")
            if not kv:
                raise SystemExit(f"bip-sweep: --stage-set expects STAGE:KEY=VALUE, got {item!r}")
            self.per_stage.setdefault(stage, []).append(kv)
        self.variants = parse_variants(args.variant)

    def config(self, stage):
        """`<configs>/<stage>.yaml`; a baseline without its own file is finetune.yaml with its trainer
        (the baselines are weight-training runs of a one-shot mask, from the dense model)."""
        from bip_dist.train.registry import TRAINERS
        path = Path(self.args.configs) / f"{stage}.yaml"
        if not path.is_file() and stage in TRAINERS and TRAINERS[stage].one_shot_mask:
            return str(path.with_name("finetune.yaml")), ["mode=prune", f"trainer={stage}"]
        return str(path), []

    def run(self, stage, overrides):
        """Run `<configs>/<stage>.yaml` with overrides unless its result exists; returns (result, seconds)."""
        from bip_dist.config import load_config
        path, implied = self.config(self.variants.get(stage, stage))
        overrides = implied + list(overrides)
        base = load_config(path, overrides)  # with this point's source_net: bip / hydra need one
        epochs = max(1, int(round(base.train.epochs * self.args.epochs_scale)))
        own = self.per_stage.get(stage, [])
        scaled = [] if any(o.startswith("train.epochs=") for o in own) else [f"train.epochs={epochs}"]
        overrides = [*self.common, *scaled, *own, *overrides]
        res, secs = run_or_reuse(path, overrides, self.args.nproc, in_process=True, tag="sweep", label=stage)
        timing = Path(res["run_dir"]) / "sweep_seconds.txt"  # wall time of the stage, beside its result
        if secs is None:
            return res, float(timing.read_text()) if timing.is_file() else 0.0
        secs = round(secs, 2)  # as stored, so a resumed sweep writes the same table
        timing.write_text(f"{secs:.2f}\n")
        return res, secs


def _row(method, k, res, seconds):
    return {"method": method, "k": k, "sparsity_pct": round(100 * (1 - k), 2),
            "measured_sparsity_pct": round(100 * res.get("sparsity", 0.0), 2),
            "top1": round(res["val_top1"], 2), "top5": round(res.get("val_top5", float("nan")), 2),
            "seconds": round(seconds, 1), "run_dir": res["run_dir"]}


def run_method(sw, method, ks, layer, pre_final, rewind):
    """Rows (one per k) of one method; the stages of a point run in order, each resumable."""
    prune = [f"prune.layer_type={layer}"]
    rows = []
    kind = sw.variants.get(method, method)
    if kind == "imp":
        from bip_dist.baselines import imp_schedule
        prev, total = pre_final, 0.0
        wanted = {round(k, 6) for k in ks}
        for k in imp_schedule(ks, rate=sw.args.imp_rate):
            res, s = sw.run("imp", prune + [f"prune.k={k}", f"source_net={rewind}", f"baseline.mask_from={prev}"])
            total += s
            prev = Path(res["run_dir"]) / "final.pt"
            if k in wanted:
                rows.append(_row(method, k, res, total))  # IMP's cost to k includes every earlier round
        return rows
    for k in ks:
        point = prune + [f"prune.k={k}"]
        res, s = sw.run(method, point + [f"source_net={pre_final}"])
        if kind.startswith("hydra") or (kind.startswith("bip") and sw.args.finetune_bip):
            ft, s2 = sw.run("finetune", point + [f"source_net={Path(res['run_dir']) / 'final.pt'}"])
            res, s = ft, s + s2
        rows.append(_row(method, k, res, s))
    return rows


def parse_variants(items):
    """{label: method} from LABEL=METHOD items; one line naming the bad item otherwise."""
    variants = {}
    for item in items:
        label, _, method = item.partition("=")
        if method not in METHODS or not label or label in METHODS:
            raise SystemExit(f"bip-sweep: --variant {item!r}: expected LABEL=METHOD with a new LABEL and "
                             f"METHOD one of {', '.join(METHODS)}")
        variants[label] = method
    return variants


def write_outputs(out, rows, dense, title):
    """results.csv / results.json, and the accuracy-vs-sparsity plot with the dense accuracy as a line."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "results.json").write_text(json.dumps({"dense_top1": dense, "rows": rows}, indent=2))
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    if dense == dense:  # not NaN (a --source without its result.json)
        ax.axhline(dense, color="black", linestyle="--", linewidth=1, label=f"dense ({dense:.2f}%)")
    for method in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["k"], r["top1"]) for r in rows if r["method"] == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method.upper())
    ks = sorted({r["k"] for r in rows}, reverse=True)
    # Remaining ratio on a log axis (the paper's spacing), labelled with sparsity, growing to the right.
    ax.set_xscale("log")
    ax.set_xlim(max(ks) * 1.15, min(ks) / 1.15)
    ax.set_xticks(ks, [f"{100 * (1 - k):.1f}" for k in ks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("sparsity (%)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_sparsity.png", dpi=120)
    plt.close(fig)


def print_table(rows, dense):
    ks = sorted({r["k"] for r in rows}, reverse=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    acc = {(r["method"], r["k"]): r["top1"] for r in rows}
    w = max(9, *(len(m) + 2 for m in methods))  # variant labels are longer than the method names
    print(f"\ndense top-1 {dense:.2f}%\n{'sparsity %':>11}" + "".join(f"{m:>{w}}" for m in methods))
    for k in ks:
        print(f"{100 * (1 - k):>11.2f}" + "".join(f"{acc.get((m, k), float('nan')):>{w}.2f}" for m in methods))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="bip-sweep", description=__doc__.splitlines()[0])
    p.add_argument("--sweep", default=None, help="YAML sweep definition (configs/sweeps/): its keys are "
                   "this command's options with '_' for '-'; options given here override it")
    p.add_argument("--configs", default=None, help="folder with pretrain.yaml and <method>.yaml files")
    p.add_argument("--methods", default="bip,hydra,omp,imp",
                   help=f"comma list of {', '.join(METHODS + REFERENCE_METHODS)}")
    p.add_argument("--series", choices=("lth", "structured"), default=None,
                   help="lth: unstructured k = 0.8 ... 0.0092; structured: k = 0.9 ... 0.1 (filter/channel)")
    p.add_argument("--ks", default=None, help="comma list of remaining ratios (a subset of the series)")
    p.add_argument("--layer-type", default=None, choices=("unstructured", "filter", "channel"),
                   help="default: unstructured for the lth series, channel for the structured one")
    p.add_argument("--name", default="sweep", help="experiment name: runs go to <out-dir>/<name>/")
    p.add_argument("--out-dir", default="runs")
    p.add_argument("--source", default=None, help="pretrained checkpoint; default: run/reuse pretrain.yaml")
    p.add_argument("--rewind", default="1ep", help="IMP rewinding point saved by the pretrain run ('1ep', "
                   "'200it', '0it'), or 'final' to rewind to the pretrained weights")
    p.add_argument("--imp-rate", type=float, default=0.2, help="IMP: fraction of survivors pruned per round")
    p.add_argument("--finetune-bip", action="store_true", help="finetune BiP's result too")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="scale every stage's epochs")
    p.add_argument("--nproc", type=int, default=1, help="processes per stage (torchrun) ")
    p.add_argument("--progress", action="store_true", help="tqdm bars per epoch")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides for every stage (--set a=1 b=2)")
    p.add_argument("--stage-set", action="append", default=[], metavar="STAGE:KEY=VALUE",
                   help="override for one stage (pretrain, bip, hydra, finetune, omp, imp, random, or a "
                   "variant's label)")
    p.add_argument("--variant", action="append", default=[], metavar="LABEL=METHOD",
                   help="METHOD run again as the method LABEL (list LABEL in --methods), with LABEL's own "
                   "--stage-set overrides; in a --sweep file: 'variant: {LABEL: METHOD}'")
    args = p.parse_args(argv)
    if args.sweep:
        import yaml
        spec = yaml.safe_load(Path(args.sweep).read_text()) or {}
        unknown = [k for k in spec if not hasattr(args, k) or k == "sweep"]
        if unknown:
            p.error(f"{args.sweep}: unknown keys {unknown}")
        spec = {k: ",".join(map(str, v)) if k in ("ks", "methods") and isinstance(v, list) else v
                for k, v in spec.items()}
        stage_set = spec.pop("stage_set", {}) or {}
        spec["stage_set"] = [f"{st}:{kv}" for st, kvs in stage_set.items() for kv in kvs]
        spec["variant"] = [f"{label}={m}" for label, m in (spec.pop("variant", {}) or {}).items()]
        spec["set"] = list(spec.get("set", []))
        p.set_defaults(**spec)
        again = p.parse_args(argv)  # command-line options win; list options add to the file's
        again.set, again.stage_set = spec["set"] + args.set, spec["stage_set"] + args.stage_set
        again.variant = spec["variant"] + args.variant
        args = again
    if not args.configs:
        p.error("--configs (or 'configs' in the --sweep file) is required")
    return args


def main(argv=None):
    from bip_dist.train import preempt
    previous = preempt.install()  # SIGTERM / SIGUSR1 end the running stage with a checkpoint; rerun resumes
    try:
        return _sweep(parse_args(argv))
    except StageStopped as e:
        print(f"bip-sweep: {e}", file=sys.stderr)
        return e.code
    finally:
        preempt.restore(previous)


def _sweep(args):
    methods = [m for m in args.methods.split(",") if m]
    sw = Sweep(args)
    known = [*METHODS, *REFERENCE_METHODS, *sw.variants]
    bad = [m for m in methods if m not in known]
    if bad or not methods:
        print(f"bip-sweep: unknown method(s) {bad}; valid: {', '.join(known)}",
              file=sys.stderr)
        return 2
    series = args.series or ("structured" if args.layer_type in ("filter", "channel") else "lth")
    ks = [float(k) for k in args.ks.split(",")] if args.ks else \
        (LTH_SERIES if series == "lth" else STRUCTURED_SERIES)
    layer = args.layer_type or ("unstructured" if series == "lth" else "channel")
    if args.source:
        pre_final, rewind = Path(args.source), Path(args.source)
        res = pre_final.parent / "result.json"  # a pretrain stage's final.pt has its result beside it
        dense = json.loads(res.read_text())["val_top1"] if res.is_file() else float("nan")
    else:
        extra = [f"baseline.save_rewind={args.rewind}"] if "imp" in methods and args.rewind != "final" else []
        pre, _ = sw.run("pretrain", extra)
        pre_final, dense = Path(pre["run_dir"]) / "final.pt", pre["val_top1"]
        rewind = Path(pre["run_dir"]) / "rewind.pt" if extra else pre_final
    rows = []
    for method in methods:
        rows += run_method(sw, method, ks, layer, pre_final, rewind)
        out = Path(args.out_dir) / args.name / "sweep"
        write_outputs(out, rows, dense, f"{args.name}: {layer}")  # after every method: partial results
    print_table(rows, dense)
    print(f"\nwrote {out / 'results.csv'} and {out / 'accuracy_vs_sparsity.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
