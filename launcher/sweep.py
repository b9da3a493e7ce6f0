"""`bip-sweep`: accuracy vs sparsity of several pruning methods from one pretrained model (the BiP paper's
Figure 3 for any model and dataset), over several seeds.

    bip-sweep --configs configs/digits --methods bip,hydra,omp,imp --ks 0.41,0.2097,0.1074,0.055 --seeds 0,1,2

For each seed, method and remaining ratio k it runs the method's stages with the training loop, each in its
own run folder (named by the config hash), and skips every stage whose result.json already exists, so an
interrupted sweep resumes where it stopped. Stages per point:
    bip     <configs>/bip.yaml (+ finetune.yaml with --finetune-bip; the paper finds BiP needs none)
    bip_first_order  bip_first_order.yaml (first-order BiP, experimental; --finetune-bip applies too)
    hydra   hydra.yaml (scores only) -> finetune.yaml
    omp     omp.yaml (magnitude mask of the pretrained weights, then weight training)
    random  random.yaml
    imp     imp.yaml once per IMP round, rewinding to the pretrain's rewind.pt; rounds: --imp-rounds lth
            (20% of the survivors each, --imp-rate) or points (one round per k of the sweep)
The pretrained model is one for all seeds (its own seed as configured): --seeds sets `seed` on every stage
after it, so the spread is that of pruning and finetuning (data order, score init, random masks).
A variant (--variant LABEL=METHOD) runs a method again as a method of its own named LABEL, with LABEL's
own --stage-set overrides: e.g. first-order BiP at two epoch budgets beside exact BiP.
Writes <out_dir>/<name>/sweep/: results.csv (a row per method x k x seed), results.json, summary.csv and
summary.md (mean and spread over seeds), accuracy_vs_sparsity.png and wall_time.png.
"""

import argparse
import json
import sys
from pathlib import Path

from launcher import sweep_plot, sweep_table
from launcher.stage import StageStopped, run_or_reuse

LTH_SERIES = [0.8, 0.64, 0.512, 0.41, 0.328, 0.262, 0.2097, 0.1678, 0.1342, 0.1074, 0.0859, 0.0687, 0.055,
              0.044, 0.035, 0.028, 0.0225, 0.018, 0.0144, 0.0115, 0.0092]
STRUCTURED_SERIES = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
METHODS = ("bip", "bip_first_order", "hydra", "omp", "imp", "random")
# The method as the reference code runs it: <configs>/<method>.yaml (docs/fidelity.md).
REFERENCE_METHODS = ("bip_reference", "hydra_reference")
IMP_ROUNDS = ("lth", "points")


# Stages after the pretrain evaluate once, after their last epoch (unless --eval-every says otherwise): a
# sweep reads only that evaluation, and on a large test split each one costs as much as many steps.
EVAL_AT_END = 1_000_000


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
        self.point = [f"train.eval_every={args.eval_every or EVAL_AT_END}", *args.point_set]

    def config(self, stage):
        """`<configs>/<stage>.yaml`; a baseline without its own file is finetune.yaml with its trainer
        (the baselines are weight-training runs of a one-shot mask, from the dense model)."""
        from bip_dist.train.registry import TRAINERS
        path = Path(self.args.configs) / f"{stage}.yaml"
        if not path.is_file() and stage in TRAINERS and TRAINERS[stage].one_shot_mask:
            return str(path.with_name("finetune.yaml")), ["mode=prune", f"trainer={stage}"]
        return str(path), []

    def run(self, stage, overrides, seed=None):
        """Run `<configs>/<stage>.yaml` with overrides unless its result exists; returns (result, seconds).
        Every stage but the pretrain is a pruning point: --point-set applies, and `seed` when given."""
        from bip_dist.config import load_config
        path, implied = self.config(self.variants.get(stage, stage))
        overrides = implied + list(overrides)
        point = self.point if stage != "pretrain" else []
        own = [*point, *self.per_stage.get(stage, [])]  # the stage's own settings win over --point-set
        base = load_config(path, [*self.args.set, *own, *overrides])  # with source_net: bip needs one
        epochs = max(1, int(round(base.train.epochs * self.args.epochs_scale)))
        seeded = [f"seed={seed}"] if seed is not None else []
        overrides = [*self.common, *own, f"train.epochs={epochs}", *seeded, *overrides]
        if self.args.report_only and not finished(path, overrides):
            raise NotRun(stage)
        res, secs = run_or_reuse(path, overrides, self.args.nproc, in_process=True, tag="sweep", label=stage)
        timing = Path(res["run_dir"]) / "sweep_seconds.txt"  # wall time of the stage, beside its result
        if secs is None:
            return res, float(timing.read_text()) if timing.is_file() else 0.0
        secs = round(secs, 2)  # as stored, so a resumed sweep writes the same table
        timing.write_text(f"{secs:.2f}\n")
        return res, secs

    def seed_of(self, stage, seed):
        """The seed a stage runs with: the sweep's, or its config's when the sweep sets none."""
        if seed is not None:
            return seed
        from bip_dist.config import load_config
        path, implied = self.config(self.variants.get(stage, stage))
        own = [*self.args.set, *self.point, *self.per_stage.get(stage, [])]
        return load_config(path, [*implied, "source_net=x.pt", *own]).seed


def imp_rounds(ks, mode, rate):
    """IMP's rounds (descending k): `lth` prunes `rate` of the survivors per round and adds a round at each
    requested k (the LTH series); `points` runs one round per k of the sweep, 1 -> ks[0] -> ks[1] -> ..."""
    if mode == "points":
        return sorted({round(float(k), 6) for k in ks}, reverse=True)
    from bip_dist.baselines import imp_schedule
    return imp_schedule(ks, rate=rate)


class NotRun(Exception):
    """--report-only met a stage that has not finished: the method's later points are left out."""


def finished(path, overrides):
    """Whether the stage of `path` with `overrides` has its result.json (what run_or_reuse would reuse)."""
    from bip_dist.config import load_config
    from bip_dist.run_dir import run_dir_for
    return (run_dir_for(load_config(path, overrides)) / "result.json").is_file()


def run_method(sw, method, ks, layer, pre_final, rewind, seed):
    """Rows (one per k) of one method at one seed (None: the configs' own); the stages of a point run in
    order, each resumable. seconds_to_k counts every stage from the pretrained model on. With
    --report-only, the rows of the points whose stages have all finished."""
    rows = []
    try:
        _run_method(sw, method, ks, layer, pre_final, rewind, seed, rows)
    except NotRun:
        pass
    return rows


def _run_method(sw, method, ks, layer, pre_final, rewind, seed, rows):
    prune = [f"prune.layer_type={layer}"]
    kind = sw.variants.get(method, method)
    shown = sw.seed_of(method, seed)
    if kind == "imp":
        prev, total = pre_final, 0.0
        wanted = {round(k, 6) for k in ks}
        for k in imp_rounds(ks, sw.args.imp_rounds, sw.args.imp_rate):
            res, s = sw.run(method, prune + [f"prune.k={k}", f"source_net={rewind}",
                                             f"baseline.mask_from={prev}"], seed)
            total += s
            prev = Path(res["run_dir"]) / "final.pt"
            if k in wanted:
                rows.append(sweep_table.row(method, k, shown, res, s, total))  # every earlier round too
        return
    for k in ks:
        point = prune + [f"prune.k={k}"]
        res, s = sw.run(method, point + [f"source_net={pre_final}"], seed)
        if kind.startswith("hydra") or (kind.startswith("bip") and sw.args.finetune_bip):
            ft, s2 = sw.run("finetune", point + [f"source_net={Path(res['run_dir']) / 'final.pt'}"], seed)
            res, s = ft, s + s2
        rows.append(sweep_table.row(method, k, shown, res, s, s))


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


def parse_seeds(text, where):
    """[int, ...] from '0,1,2' (None for none given); one line naming the bad value otherwise."""
    if text in (None, ""):
        return None
    try:
        seeds = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise SystemExit(f"bip-sweep: {where} {text!r}: expected distinct integers >= 0, e.g. 0,1,2")
    return seeds


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
    p.add_argument("--imp-rounds", default="lth", choices=IMP_ROUNDS,
                   help="IMP's rounds. lth: prune --imp-rate of the survivors per round (the LTH series), "
                   "plus a round at each k; points: one round per k of the sweep (1 -> ks[0] -> ks[1] ...)")
    p.add_argument("--imp-rate", type=float, default=0.2, help="IMP (--imp-rounds lth): fraction of the "
                   "survivors pruned per round")
    p.add_argument("--seeds", default=None, help="comma list: every stage after the pretrain runs once per "
                   "seed (seed=S); the one pretrained model is shared. Default: the configs' seed")
    p.add_argument("--eval-every", type=int, default=0, help="train.eval_every of the stages after the "
                   "pretrain; 0 (default): evaluate once, after the last epoch")
    p.add_argument("--finetune-bip", action="store_true", help="finetune BiP's result too")
    p.add_argument("--epochs-scale", type=float, default=1.0,
                   help="scale every stage's epochs (from its config, --set, --point-set, --stage-set)")
    p.add_argument("--nproc", type=int, default=1, help="processes per stage (torchrun) ")
    p.add_argument("--progress", action="store_true", help="tqdm bars per epoch")
    p.add_argument("--report-only", action="store_true", help="train nothing: write the tables and plots "
                   "of the stages that have finished (a sweep still running elsewhere, or stopped)")
    p.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides for every stage (--set a=1 b=2)")
    p.add_argument("--point-set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                   help="overrides for every stage after the pretrain (every method's stages at every point)")
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
        spec = {k: ",".join(map(str, v)) if k in ("ks", "methods", "seeds") and isinstance(v, list) else v
                for k, v in spec.items()}
        stage_set = spec.pop("stage_set", {}) or {}
        spec["stage_set"] = [f"{st}:{kv}" for st, kvs in stage_set.items() for kv in kvs]
        spec["variant"] = [f"{label}={m}" for label, m in (spec.pop("variant", {}) or {}).items()]
        spec["set"] = list(spec.get("set", []) or [])
        spec["point_set"] = list(spec.get("point_set", []) or [])
        p.set_defaults(**spec)
        again = p.parse_args(argv)  # command-line options win; list options add to the file's
        again.set, again.stage_set = spec["set"] + args.set, spec["stage_set"] + args.stage_set
        again.point_set = spec["point_set"] + args.point_set
        again.variant = spec["variant"] + args.variant
        args = again
    def where(key):
        return f"{args.sweep}: {key}" if args.sweep else "--" + key.replace("_", "-")
    if args.imp_rounds not in IMP_ROUNDS:  # a sweep file's value bypasses argparse's choices
        raise SystemExit(f"bip-sweep: {where('imp_rounds')} {args.imp_rounds!r}: expected one of "
                         f"{', '.join(IMP_ROUNDS)}")
    args.seeds = parse_seeds(args.seeds, where("seeds"))
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
    except NotRun as e:
        print(f"bip-sweep: --report-only: the {e} stage has not finished; nothing to report", file=sys.stderr)
        return 2
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
    rows, out = [], Path(args.out_dir) / args.name / "sweep"
    for seed in args.seeds or [None]:  # seed by seed: a stopped sweep has whole seeds done first
        for method in methods:
            rows += run_method(sw, method, ks, layer, pre_final, rewind, seed)
            text = sweep_table.write_tables(out, rows, dense)  # the partial results of a stopped sweep
        sweep_plot.write_plots(out, sweep_table.summarise(rows), dense, f"{args.name}: {layer}")
    print("\n" + text)
    print(f"wrote {out}/: results.csv, summary.csv, summary.md, accuracy_vs_sparsity.png, wall_time.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
