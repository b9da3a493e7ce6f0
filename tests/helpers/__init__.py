"""Shared pieces of the test suite, one concern per module:

models      the tiny test networks, and their registration for one test (or one worker process)
data        in-memory images and batches: learnable data, random batches, a rank's shard
loaders     the fake bip_dist.data.build_loaders: rank-sharded in-memory loaders
runs        short in-process train() runs of the tiny model: configs, crash and record callbacks
outputs     readers of what a run leaves: final state, metrics records, error lines
dist        gloo jobs on 127.0.0.1: free ports, joining as a rank, spawning ranks
equivalence the step cases run in one process and on two ranks, and their comparison
cli         bip-train in this process, in a forked child or under bip-launch; child environments
prepared    prepared data files (LMDB, .npz) of random images, and an LMDB reader
archives    fake source archives in the real ImageNet / Tiny-ImageNet / CIFAR layouts
fidelity    the reference presets on the tiny model, and the reference loop's twin network
reference_loop  an independent re-implementation of the reference code's BiP and HYDRA iterations

Tests import them as `from tests.helpers import runs`: pytest.ini's `pythonpath = .` makes the repository
root importable, and a process a test starts gets it through PYTHONPATH (cli.child_env).
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository root
