"""Which checkpoint a path means: one rule for resume, source_net, bip-export, bip-compact and consolidate.

    final.pt, rewind.pt, any .pt file       that file
    RUN/checkpoints/step_00001200_ep0003    that checkpoint folder
    RUN/checkpoints                         the folder `latest` names, else the newest complete one
    RUN                                     its final.pt, else as RUN/checkpoints
"""

from pathlib import Path

from bip_dist.checkpoint.layout import Layout, is_complete


def candidates(path):
    """The checkpoints `path` may mean, the preferred one first (a file or folder names only itself)."""
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such run folder or checkpoint")
    if p.is_file() or is_complete(p):
        return [p]
    found = [p / "final.pt"] if (p / "final.pt").is_file() else []
    for root in (p / "checkpoints", p):
        if root.is_dir():
            found += Layout(root).newest_first()
    return list(dict.fromkeys(found))


def locate(path):
    """The checkpoint `path` means (see the module docstring); raises naming `path` when there is none."""
    found = candidates(path)
    if not found:
        raise FileNotFoundError(f"{path}: holds no final.pt and no complete checkpoint")
    return found[0]
