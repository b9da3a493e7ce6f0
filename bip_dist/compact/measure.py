"""Parameter count, multiply-accumulates and side-by-side latency of a model pair."""

import statistics
import time

import torch
import torch.nn as nn


def count_params(model):
    """Trainable-shape parameters (weights, biases, BatchNorm affine); pruning scores excluded."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.endswith("scores"))


@torch.no_grad()
def count_macs(model, input_size, nonzero=False):
    """Multiply-accumulates of every conv / linear for one input of `input_size` (C, H, W). With
    `nonzero`, each layer's count is scaled by its fraction of non-zero (effective) weights: the compute a
    sparse kernel could skip down to."""
    total, hooks = [0], []

    def hook(mod, inp, out):
        w = mod.masked_weight() if hasattr(mod, "masked_weight") else mod.weight
        per_out = w[0].numel()  # (in / groups) * kh * kw, or in_features
        macs = out.numel() // out.shape[0] * per_out
        if nonzero:
            macs = macs * int(torch.count_nonzero(w)) / w.numel()
        total[0] += macs

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(hook))
    was = model.training
    model.eval()
    model(torch.zeros(1, *input_size, device=next(model.parameters()).device))
    model.train(was)
    for h in hooks:
        h.remove()
    return int(total[0])


@torch.no_grad()
def compare_latency(models, x, reps=20, warmup=3):
    """Median and spread of the eval forward time (ms) of each model in `models` (name -> module) on `x`,
    alternating the models every repetition so that both see the same machine state (clock, cache,
    other load). Returns {name: {"median_ms", "p10_ms", "p90_ms"}}."""
    for m in models.values():
        m.eval()
        for _ in range(warmup):
            m(x)
    times = {name: [] for name in models}
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    for _ in range(reps):
        for name, m in models.items():
            sync()
            t0 = time.perf_counter()
            m(x)
            sync()
            times[name].append(1e3 * (time.perf_counter() - t0))
    out = {}
    for name, ts in times.items():
        q = statistics.quantiles(ts, n=10) if len(ts) >= 2 else ts * 9
        out[name] = {"median_ms": statistics.median(ts), "p10_ms": q[0], "p90_ms": q[-1]}
    return out
