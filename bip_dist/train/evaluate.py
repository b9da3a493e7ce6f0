"""Validation (and holdout) top-1 / top-5 that counts every sample exactly once across ranks."""

import torch
import torch.nn.functional as F


@torch.no_grad()
def evaluate(engine, model, loader, prefix="val"):
    """{prefix}_loss, _top1, _top5 (percent) and _count over `loader`, summed over every rank."""
    was_training = model.training
    model.eval()
    dev = engine.device
    stats = torch.zeros(4, dtype=torch.float64, device=dev)  # loss sum, top1, top5, count
    for x, y in loader:
        x, y = engine.to_device(x, y)
        with engine.autocast():
            out = model(x)
        out = out.float()
        stats[0] += F.cross_entropy(out, y, reduction="sum")
        topk = out.topk(min(5, out.shape[1]), dim=1).indices
        hit = topk == y[:, None]
        stats[1] += hit[:, 0].sum()
        stats[2] += hit.any(1).sum()
        stats[3] += y.numel()
    stats = engine.all_reduce_sum(stats)
    model.train(was_training)
    n = max(1.0, stats[3].item())
    return {f"{prefix}_loss": stats[0].item() / n, f"{prefix}_top1": 100.0 * stats[1].item() / n,
            f"{prefix}_top5": 100.0 * stats[2].item() / n, f"{prefix}_count": int(stats[3].item())}
