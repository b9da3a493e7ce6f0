"""bip-sweep's plots, from the summary over seeds (launcher/sweep_table.py): accuracy_vs_sparsity.png (mean
with a min..max band and sample-std error bars; one panel per split) and wall_time.png (seconds to k)."""


def _axes_by_sparsity(ax, ks):
    # Remaining ratio on a log axis (the paper's spacing), labelled with sparsity, growing to the right.
    ax.set_xscale("log")
    ax.set_xlim(max(ks) * 1.15, min(ks) / 1.15)
    ax.set_xticks(ks, [f"{100 * (1 - k):.1f}" for k in ks], rotation=45)
    ax.minorticks_off()
    ax.set_xlabel("sparsity (%)")
    ax.grid(alpha=0.3)


def _series(summary, method, metric):
    pts = sorted((s["k"], s) for s in summary if s["method"] == method and s[f"{metric}_mean"] != "")
    ks = [k for k, _ in pts]
    mean = [s[f"{metric}_mean"] for _, s in pts]
    std = [s[f"{metric}_std"] or 0.0 for _, s in pts]
    lo = [s[f"{metric}_min"] for _, s in pts]
    hi = [s[f"{metric}_max"] for _, s in pts]
    return ks, mean, std, lo, hi


def _draw(ax, summary, metric):
    for method in dict.fromkeys(s["method"] for s in summary):
        ks, mean, std, lo, hi = _series(summary, method, metric)
        if not ks:
            continue
        line = ax.errorbar(ks, mean, yerr=std, marker="o", capsize=3, label=method.upper())
        ax.fill_between(ks, lo, hi, color=line[0].get_color(), alpha=0.15, linewidth=0)


def write_plots(out, summary, dense, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ks = sorted({s["k"] for s in summary}, reverse=True)
    splits = [m for m in ("val_top1", "holdout_top1") if any(s[f"{m}_mean"] != "" for s in summary)]
    fig, axes = plt.subplots(1, len(splits), figsize=(6.4 * len(splits), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], splits):
        if metric == "val_top1" and dense == dense:  # not NaN (a --source without its result.json)
            ax.axhline(dense, color="black", linestyle="--", linewidth=1, label=f"dense ({dense:.2f}%)")
        _draw(ax, summary, metric)
        _axes_by_sparsity(ax, ks)
        ax.set_ylabel(("test" if metric == "val_top1" else "holdout") + " top-1 (%)")
        seeds = max(s["n_seeds"] for s in summary)
        ax.set_title(f"{title}" + (f" (mean, std bars, min..max band; {seeds} seeds)" if seeds > 1 else ""))
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "accuracy_vs_sparsity.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    _draw(ax, summary, "seconds_to_k")
    _axes_by_sparsity(ax, ks)
    ax.set_yscale("log")
    ax.set_ylabel("wall time to reach k (s, pretrain excluded)")
    ax.set_title(f"{title}: cost per method")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "wall_time.png", dpi=120)
    plt.close(fig)
