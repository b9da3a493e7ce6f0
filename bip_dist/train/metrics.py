"""The one table of step-output keys: what a step dict may hold, how it is logged, and top-1.

A step returns per BiP level (theta: lower, score: upper) `loss_<level>`, `correct_<level>` and
`n_<level>`, plus scalars from STEP_SCALARS; the loop adds the data and step times and the learning rates,
the StepMeter the throughput and peak memory. Every logged key maps to its TensorBoard tag here. A step
whose one batch serves both levels (bip_first_order) also returns `n_images`, so it is counted once.
"""

LEVELS = ("theta", "score")

# Scalars (floats or 0-dim tensors) averaged over a logging window, with their TensorBoard tags.
WINDOW_MEANS = {
    "loss_theta": "train/loss_theta", "loss_score": "train/loss_score",
    "lr_theta": "lr/theta", "lr_score": "lr/score",
    "mask_flips": "mask/flip_rate", "score_grad_norm": "score/grad_norm",
    "time_data": "time/data", "time_theta": "time/theta", "time_score": "time/score",
    "time_comm": "time/comm", "time_mask": "time/mask", "time_step": "time/step",
}

# Derived from the counts (top-1) or added by the StepMeter (throughput, memory).
DERIVED = {
    "top1_theta": "train/top1_theta", "top1_score": "train/top1_score",
    "images_per_s": "perf/images_per_s", "peak_mem_mb": "perf/peak_mem_mb",
}

TAGS = {**WINDOW_MEANS, **DERIVED}


def top1(correct, n):
    """Top-1 accuracy in percent from a count of correct predictions out of `n`."""
    return 100.0 * float(correct) / max(1, n)


def images(out):
    """The samples a step put through forward/backward passes: `n_images`, else n_theta + n_score."""
    if "n_images" in out:
        return int(out["n_images"])
    return int(out.get("n_theta", 0)) + int(out.get("n_score", 0))


def scalarize(out):
    """One step's dict (tensors, counts, seconds) as plain floats: each level's loss and top-1, then every
    other logged key it holds."""
    res = {}
    for level in LEVELS:
        if f"loss_{level}" in out:
            res[f"loss_{level}"] = float(out[f"loss_{level}"])
            res[f"top1_{level}"] = top1(out[f"correct_{level}"], out[f"n_{level}"])
    for k, v in out.items():
        if k in TAGS and k not in res:
            res[k] = float(v)
    return res
