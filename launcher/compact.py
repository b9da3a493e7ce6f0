"""`bip-compact CHECKPOINT --out model.pt2`: export a filter- / channel-pruned run as a smaller dense net.

The compact network is saved with torch.export (load it anywhere with
`torch.export.load(path).module()`, no bip-dist needed), after checking that it reproduces the masked
model's outputs; a JSON report gives parameters, MACs and latency of both, measured side by side.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from bip_dist.data.config import DEFAULT_SIZE


def load_masked(path):
    """The prunable model of a bip-dist checkpoint (any path checkpoint.locate accepts), in eval mode."""
    from bip_dist.checkpoint.consolidate import load_model
    from bip_dist.models import build_model
    from bip_dist.pruning import make_prunable
    ck = load_model(path)
    meta = ck["meta"]
    if meta is None:
        raise ValueError(f"{ck['path']}: a bare state_dict; compact export needs a bip-dist checkpoint "
                         "(its 'meta' names the architecture)")
    if meta.get("layer_type") not in ("filter", "channel"):
        raise ValueError(f"{ck['path']}: layer_type is {meta.get('layer_type')!r}; compact export needs a "
                         "filter- or channel-pruned run")
    model = make_prunable(build_model(meta["arch"], meta["num_classes"]), meta["layer_type"])
    model.load_state_dict(ck["model"])
    return model.eval(), meta


def export_compact(masked, out_path, input_size=(3, 32, 32), batch=32, reps=20, tol=1e-5):
    """Compact `masked`, verify outputs (max abs difference <= tol), measure, save; returns the report."""
    from bip_dist.compact import compact_model, compare, compare_latency
    compact = compact_model(masked, input_size)
    x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (masked(x) - compact(x)).abs().max().item()
    if diff > tol:
        raise RuntimeError(f"compact model differs from the masked one by {diff:.3g} > {tol}")
    report = {"max_abs_diff": diff, "input_size": list(input_size), "batch": batch, **compare(masked, compact,
                                                                                               input_size)}
    report["latency"] = {f"batch{b}": compare_latency({"masked": masked, "compact": compact}, x[:b], reps)
                         for b in sorted({1, batch})}
    ep = torch.export.export(compact, (x[:2],), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    torch.export.save(ep, str(out_path))
    return report


def main(argv=None):
    p = argparse.ArgumentParser(prog="bip-compact", description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a filter- or channel-pruned run: its run folder (final.pt, else the "
                   "newest checkpoint), a checkpoint folder or final.pt")
    p.add_argument("--out", required=True, help="where to write the compact model (.pt2, torch.export)")
    p.add_argument("--input-size", type=int, default=None,
                   help="image side the model runs at (default: the run's dataset's native size, e.g. 32 "
                        "CIFAR, 64 Tiny-ImageNet, 224 ImageNet)")
    p.add_argument("--batch", type=int, default=32, help="batch for the latency comparison (and batch 1)")
    p.add_argument("--reps", type=int, default=20, help="timed forwards per model")
    p.add_argument("--report", default=None, help="JSON report path (default: <out>.json)")
    args = p.parse_args(argv)
    try:
        masked, meta = load_masked(args.checkpoint)
        side = args.input_size or DEFAULT_SIZE.get(meta.get("dataset"), 32)
        rep = export_compact(masked, args.out, (3, side, side), args.batch, args.reps)
    except (ValueError, FileNotFoundError, NotImplementedError) as e:
        print(f"bip-compact: {e}", file=sys.stderr)
        return 2
    rep["meta"] = meta
    report = Path(args.report or Path(args.out).with_suffix(".json"))
    report.write_text(json.dumps(rep, indent=2))
    lat = rep["latency"][f"batch{args.batch}"]
    print(f"params {rep['params_masked']:,} -> {rep['params_compact']:,}; MACs {rep['macs_masked']:,} -> "
          f"{rep['macs_compact']:,}; batch-{args.batch} latency {lat['masked']['median_ms']:.1f} -> "
          f"{lat['compact']['median_ms']:.1f} ms; max |diff| {rep['max_abs_diff']:.2g}")
    print(f"compact model: {args.out}; report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
