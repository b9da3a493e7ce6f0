"""Run folders: <out_dir>/<name>/<mode>/<config-hash>/, holding the resolved config and code revision."""

import subprocess
import sys
from pathlib import Path

import yaml

from bip_dist.config import config_hash, config_to_dict


def run_dir_for(cfg):
    return Path(cfg.out_dir) / cfg.name / cfg.mode / config_hash(cfg)


def git_revision():
    """The code revision, with '+dirty' when the tree has uncommitted changes; 'unknown' outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if dirty else "")


def prepare_run_dir(cfg, write=True):
    """Create the run folder and write config.yaml and git_rev.txt before step 0 (main rank only)."""
    d = run_dir_for(cfg)
    if write:
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
        (d / "git_rev.txt").write_text(git_revision() + "\n")
    return d


def note(run_dir, line):
    """One line for the user, on stderr and appended to the run's log.txt (best effort: the disk may be full)."""
    print(f"bip-train: {line}", file=sys.stderr, flush=True)
    try:
        with open(Path(run_dir) / "log.txt", "a") as f:
            f.write(line + "\n")
    except OSError:
        pass
