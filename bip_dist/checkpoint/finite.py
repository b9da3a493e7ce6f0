"""Refuse a checkpoint whose tensors hold nan / inf: a diverged model must not become the next stage's
source_net or an exported model (bip-train stops such runs before they write one; older files may)."""

import torch


class NonFiniteError(ValueError):
    pass


def assert_finite(state_dict, what):
    """Raise NonFiniteError (one line naming `what`, how many tensors are affected and the first) if any
    floating-point tensor of `state_dict` holds nan or inf."""
    bad = [k for k, v in state_dict.items()
           if torch.is_tensor(v) and v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise NonFiniteError(f"{what}: {len(bad)} of {len(state_dict)} tensors hold nan or inf (first: "
                             f"{bad[0]}); the run that wrote it diverged, refusing it")
