from setuptools import find_packages, setup

setup(
    name="bip-dist",
    version="0.1.0",
    description="Distributed BiP (bi-level optimization pruning) with HYDRA and classic baselines",
    packages=find_packages(include=["bip_dist*", "launcher*", "data_prep*"]),
    python_requires=">=3.10",
    entry_points={"console_scripts": [
        "bip-train = launcher.worker:main",
        "bip-launch = launcher.launch:main",
        "bip-export = launcher.export:main",
        "bip-demo = launcher.demo:main",
        "bip-prep = data_prep.cli:main",
        "bip-sweep = launcher.sweep:main",
        "bip-compact = launcher.compact:main",
        "bip-ckpt = launcher.ckpt:main",
    ]},
)
