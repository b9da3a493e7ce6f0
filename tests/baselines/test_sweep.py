"""bip-sweep end to end on in-memory data: every method, CSV + plot, IMP rounds, resume skips stages."""

import csv
import json
from pathlib import Path

import pytest

from tests.helpers import loaders

STAGE = """name: x
mode: {mode}
trainer: {trainer}
model: {{arch: tinynet}}
data: {{batch_size: 32}}
prune: {{layer_type: {layer}, k: 0.5}}
optim: {{lr: 0.05}}
train: {{epochs: 1, log_every: 2}}
log: {{tensorboard: false}}
"""


def _configs(root):
    root.mkdir()
    for name, mode, trainer, layer in [("pretrain", "pretrain", "dense", "dense"), ("bip", "prune", "bip",
                                       "unstructured"), ("hydra", "prune", "hydra", "unstructured"),
                                       ("bip_first_order", "prune", "bip_first_order", "unstructured"),
                                       ("finetune", "finetune", "finetune", "unstructured"),
                                       ("omp", "prune", "omp", "unstructured")]:
        (root / f"{name}.yaml").write_text(STAGE.format(mode=mode, trainer=trainer, layer=layer))
    return root  # no imp.yaml / random.yaml: the sweep derives them from finetune.yaml


def test_sweep_all_methods_and_resume(tmp_path, monkeypatch, capsys, tiny_models):
    from launcher import sweep
    with loaders.in_train_loop() as loop:  # the sweep's stages train on the fake loaders
        cfgs = _configs(tmp_path / "cfg")
        spec = tmp_path / "s.yaml"
        spec.write_text(f"configs: {cfgs}\nname: sw\n"
                        "methods: [bip, bip_first_order, fo_long, hydra, omp, imp, random]\n"
                        "ks: [0.8, 0.5]\nrewind: 1it\nvariant: {fo_long: bip_first_order}\n"
                        "stage_set:\n  pretrain: [train.epochs=2]\n  fo_long: [train.epochs=2]\n")
        argv = ["--sweep", str(spec), "--out-dir", str(tmp_path / "runs")]
        assert sweep.main(argv) == 0
        out = tmp_path / "runs" / "sw" / "sweep"
        rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
        methods = {*sweep.METHODS, "fo_long"}
        assert {(r["method"], float(r["k"])) for r in rows} == {(m, k) for m in methods for k in (0.8, 0.5)}
        # the variant is bip_first_order.yaml run with its own overrides: 2 epochs where the method has 1
        epochs = {r["method"]: json.loads((Path(r["run_dir"]) / "result.json").read_text())["epoch"] for r in rows}
        assert (epochs["bip_first_order"], epochs["fo_long"]) == (1, 2)
        for r in rows:
            assert abs(float(r["measured_sparsity_pct"]) - float(r["sparsity_pct"])) < 0.5, r
        assert (out / "accuracy_vs_sparsity.png").stat().st_size > 1000
        imp_rounds = sorted((tmp_path / "runs" / "sw" / "prune").glob("*/result.json"))
        assert len(imp_rounds) >= 2 * 6 + 3  # 6 methods (IMP aside) x 2 points + IMP rounds 0.8, 0.64, 0.5
        pre = next((tmp_path / "runs" / "sw" / "pretrain").glob("*/rewind.pt"))
        assert pre.is_file()
        # a second invocation finds every result and trains nothing
        monkeypatch.setattr(loop, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
        capsys.readouterr()
        assert sweep.main(argv) == 0
        assert "[sweep]" not in capsys.readouterr().out
        assert list(csv.DictReader((out / "results.csv").read_text().splitlines())) == rows


def test_bad_variant_named(tmp_path):
    from launcher import sweep
    for item in ("bip=hydra", "fo=bip_second_order", "fo"):
        with pytest.raises(SystemExit, match=f"--variant '{item}': expected LABEL=METHOD"):
            sweep.main(["--configs", str(tmp_path), "--variant", item])


def test_a_diverged_stage_stops_the_sweep_with_its_exit_status(tmp_path, capsys, tiny_models):
    """A stage's deliberate stop is the sweep's: one line naming the stage, bip-train's exit status."""
    from bip_dist import exit_codes
    from launcher import sweep
    argv = ["--configs", str(_configs(tmp_path / "cfg")), "--methods", "omp", "--ks", "0.5",
            "--out-dir", str(tmp_path / "runs"), "--stage-set", "pretrain:optim.lr=1e12"]
    capsys.readouterr()
    with loaders.in_train_loop():
        assert sweep.main(argv) == exit_codes.DIVERGED
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bip-sweep: pretrain: step "), err
    assert "nan" in err[0] or "inf" in err[0], err
