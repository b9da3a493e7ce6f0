"""The digits sweep compares the default and the reference presets: its methods are valid and each
method's stage config loads (with the point's source_net, as the sweep passes it)."""

from bip_dist.config import load_config
from tests.helpers import ROOT


def test_digits_sweep_has_the_reference_preset(monkeypatch):
    from launcher import sweep
    monkeypatch.chdir(ROOT)
    args = sweep.parse_args(["--sweep", "configs/sweeps/digits_demo.yaml"])
    methods = args.methods.split(",")
    assert {"bip", "bip_reference"} <= set(methods)
    assert set(methods) <= set(sweep.METHODS + sweep.REFERENCE_METHODS)
    for m in sweep.REFERENCE_METHODS:
        cfg = load_config(ROOT / args.configs / f"{m}.yaml", ["source_net=x.pt"])
        assert cfg.trainer == m.split("_")[0] and cfg.prune.score_init == "shared"
        assert any(s.startswith(f"{m}:train.epochs=") for s in args.stage_set)  # as short as its default twin
