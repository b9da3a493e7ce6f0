"""bip-sweep's tables: one row per method x k x seed (results.csv / results.json), and the mean and spread
over seeds per method x k (summary.csv, and summary.md, the table printed at the end)."""

import csv
import json
import math
import statistics

# The metrics summarised over seeds; holdout_top1 is empty for runs without a held-out selection split.
SUMMARISED = ("holdout_top1", "val_top1", "seconds_to_k")
LABELS = {"holdout_top1": "holdout top-1 (%), the selection split",
          "val_top1": "val top-1 (%), the test split",
          "seconds_to_k": "seconds to reach k (pretrain excluded)"}


def row(method, k, seed, res, seconds, seconds_to_k):
    """One results.csv row: `seconds` is this row's own stages (an IMP row: its last round), `seconds_to_k`
    everything the method ran from the pretrained model to this k (every IMP round before it too)."""
    holdout = res.get("holdout_top1")
    return {"method": method, "k": k, "seed": seed, "sparsity_pct": round(100 * (1 - k), 2),
            "measured_sparsity_pct": round(100 * res.get("sparsity", 0.0), 2),
            "val_top1": round(res["val_top1"], 2), "val_top5": round(res.get("val_top5", float("nan")), 2),
            "holdout_top1": "" if holdout is None else round(holdout, 2),
            "seconds": round(seconds, 1), "seconds_to_k": round(seconds_to_k, 1), "run_dir": res["run_dir"]}


def _write_csv(path, rows):
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def summarise(rows):
    """Per method x k (in the rows' order of methods, k descending): n_seeds and, for each summarised
    metric, mean, sample std (empty with one seed) and min / max over the seeds that have it."""
    groups = {}
    for r in rows:
        groups.setdefault((r["method"], r["k"]), []).append(r)
    out = []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    for (method, k), rs in sorted(groups.items(), key=lambda g: (methods.index(g[0][0]), -g[0][1])):
        s = {"method": method, "k": k, "sparsity_pct": round(100 * (1 - k), 2), "n_seeds": len(rs)}
        for m in SUMMARISED:
            vals = [float(r[m]) for r in rs if r[m] != ""]
            s[f"{m}_mean"] = round(statistics.fmean(vals), 2) if vals else ""
            s[f"{m}_std"] = round(statistics.stdev(vals), 2) if len(vals) > 1 else ""
            s[f"{m}_min"] = round(min(vals), 2) if vals else ""
            s[f"{m}_max"] = round(max(vals), 2) if vals else ""
        out.append(s)
    return out


def _cell(s, m):
    if s is None or s[f"{m}_mean"] == "":
        return ""
    f = ".0f" if m == "seconds_to_k" else ".2f"
    if s[f"{m}_std"] == "":  # one seed has it
        return f"{s[f'{m}_mean']:{f}}"
    return f"{s[f'{m}_mean']:{f}} ± {s[f'{m}_std']:{f}} ({s[f'{m}_min']:{f}}..{s[f'{m}_max']:{f}})"


def markdown(summary, dense):
    """summary.md: one table per summarised metric (sparsity down, methods across), cells
    'mean ± sample std (min..max)' over seeds; metrics no row has are left out."""
    methods = list(dict.fromkeys(s["method"] for s in summary))
    ks = sorted({s["k"] for s in summary}, reverse=True)
    cells = {(s["method"], s["k"]): s for s in summary}
    seeds = sorted({s["n_seeds"] for s in summary})
    n = "/".join(map(str, seeds))
    head = f"Mean ± sample std (min..max) over {n} seed(s) per cell."
    lines = [head if math.isnan(dense) else f"{head} Dense top-1 (val): {dense:.2f} %."]
    for m in SUMMARISED:
        if all(s[f"{m}_mean"] == "" for s in summary):
            continue
        lines += ["", f"**{LABELS[m]}**", "", "| sparsity % | " + " | ".join(methods) + " |",
                  "|---" * (len(methods) + 1) + "|"]
        for k in ks:
            lines.append(f"| {100 * (1 - k):.2f} | " +
                         " | ".join(_cell(cells.get((meth, k)), m) for meth in methods) + " |")
    return "\n".join(lines) + "\n"


def write_tables(out, rows, dense):
    """results.csv / results.json (every row), summary.csv / summary.md (over seeds); returns summary.md's
    text."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "results.csv", rows)
    summary = summarise(rows)
    _write_csv(out / "summary.csv", summary)
    (out / "results.json").write_text(json.dumps({"dense_top1": None if math.isnan(dense) else dense,
                                                  "rows": rows, "summary": summary}, indent=2))
    text = markdown(summary, dense)
    (out / "summary.md").write_text(text)
    return text
