"""`make demo`: pretrain -> BiP prune (k = 0.1) -> finetune -> export on the real digits images.

Each stage is the real CLI (launcher.worker, the BiP stage under torchrun with two workers), so the demo
exercises what users run. A stage whose result.json exists is not run again.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from bip_dist.config import load_config
from launcher.stage import StageStopped, run_or_reuse


def run_stage(config, overrides, nproc):
    """A stage through the real CLI (launcher.stage), or its earlier result; returns (result, seconds)."""
    res, secs = run_or_reuse(config, overrides, nproc, tag="demo")
    if secs is None:
        print(f"[demo] {Path(config).stem}: reusing {res['run_dir']}", flush=True)
    return res, secs or 0.0


def main(argv=None):
    from bip_dist.train import preempt
    # Ctrl-C / SIGTERM end the running stage with a checkpoint (a child stage gets Ctrl-C from the
    # terminal itself); without this the demo would die of it and kill that stage before its checkpoint.
    previous = preempt.install()
    try:
        return _demo(argv)
    except StageStopped as e:
        print(f"bip-demo: {e}", file=sys.stderr)
        return e.code
    finally:
        preempt.restore(previous)


def _demo(argv):
    p = argparse.ArgumentParser(prog="bip-demo", description=__doc__.splitlines()[0])
    p.add_argument("--out-dir", default="runs", help="root of run folders (summary goes to <out>/demo/)")
    p.add_argument("--k", type=float, default=0.1, help="remaining fraction of weights")
    p.add_argument("--workers", type=int, default=2, help="torchrun workers for the BiP stage")
    p.add_argument("--epochs-scale", type=float, default=1.0, help="scale every stage's epochs (smoke runs)")
    args = p.parse_args(argv)

    def epochs(config):
        return max(1, int(round(load_config(config).train.epochs * args.epochs_scale)))

    common = [f"out_dir={args.out_dir}", "train.progress=false"]
    pre, t_pre = run_stage("configs/digits/pretrain.yaml",
                           common + [f"train.epochs={epochs('configs/digits/pretrain.yaml')}"], 1)
    pre_final = Path(pre["run_dir"]) / "final.pt"
    # Two workers each take half of the configured per-rank batch: same global batch as one process.
    bsz = load_config("configs/digits/bip.yaml").data.batch_size // max(1, args.workers)
    bip, t_bip = run_stage("configs/digits/bip.yaml",
                           common + [f"source_net={pre_final}", f"prune.k={args.k}", f"data.batch_size={bsz}",
                                     f"train.epochs={epochs('configs/digits/bip.yaml')}"], args.workers)
    ft, t_ft = run_stage("configs/digits/finetune.yaml",
                         common + [f"source_net={Path(bip['run_dir']) / 'final.pt'}", f"prune.k={args.k}",
                                   f"train.epochs={epochs('configs/digits/finetune.yaml')}"], 1)
    from bip_dist.checkpoint.io import load_checkpoint
    from bip_dist.export import export_checkpoint
    from bip_dist.models import build_model
    out = Path(args.out_dir) / "demo"
    export = out / "export" / f"resnet20s_digits_k{args.k}.pt"
    export.parent.mkdir(parents=True, exist_ok=True)
    rep = export_checkpoint(load_checkpoint(Path(ft["run_dir"]) / "final.pt"), export,
                            export.with_suffix(".sparsity.json"))
    # The export must load into the plain registry model with nothing of the pruning code.
    build_model("resnet20s", 10).load_state_dict(torch.load(export, weights_only=True), strict=True)
    summary = {"dense_top1": pre["val_top1"], "bip_top1": bip["val_top1"], "finetune_top1": ft["val_top1"],
               "sparsity": rep["global_sparsity"], "k": args.k, "target_sparsity": 1 - args.k,
               "export": str(export), "train_seconds": {"pretrain": t_pre, "bip": t_bip, "finetune": t_ft},
               "bip_workers": args.workers}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"\n{'stage':<12}{'top-1 (%)':>10}{'sparsity':>10}{'seconds':>9}")
    print(f"{'dense':<12}{pre['val_top1']:>10.2f}{0.0:>10.4f}{t_pre:>9.1f}")
    print(f"{'bip k=' + str(args.k):<12}{bip['val_top1']:>10.2f}{bip.get('sparsity', 0):>10.4f}{t_bip:>9.1f}")
    print(f"{'finetune':<12}{ft['val_top1']:>10.2f}{rep['global_sparsity']:>10.4f}{t_ft:>9.1f}")
    print(f"summary: {out / 'summary.json'}; exported weights: {export}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
