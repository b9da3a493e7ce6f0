"""bip-sweep end to end on in-memory data: every method, CSV + plot, IMP rounds, resume skips stages."""

import csv
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "monitor"))
from fake_loaders import use_fakes  # noqa: E402

STAGE = """name: x
mode: {mode}
trainer: {trainer}
model: {{arch: tinynet}}
prune: {{layer_type: {layer}, k: 0.5}}
optim: {{lr: 0.05}}
train: {{epochs: 1, log_every: 2}}
log: {{tensorboard: false}}
"""


def _configs(root):
    root.mkdir()
    for name, mode, trainer, layer in [("pretrain", "pretrain", "dense", "dense"), ("bip", "prune", "bip",
                                       "unstructured"), ("hydra", "prune", "hydra", "unstructured"),
                                       ("finetune", "finetune", "finetune", "unstructured"),
                                       ("omp", "prune", "omp", "unstructured")]:
        (root / f"{name}.yaml").write_text(STAGE.format(mode=mode, trainer=trainer, layer=layer))
    return root  # no imp.yaml / random.yaml: the sweep derives them from finetune.yaml


def test_sweep_all_methods_and_resume(tmp_path, monkeypatch, capsys):
    from launcher import sweep
    loop = use_fakes(monkeypatch, batches=3, bs=8)
    cfgs = _configs(tmp_path / "cfg")
    spec = tmp_path / "s.yaml"
    spec.write_text(f"configs: {cfgs}\nname: sw\nmethods: [bip, hydra, omp, imp, random]\nks: [0.8, 0.5]\n"
                    "rewind: 1it\nstage_set:\n  pretrain: [train.epochs=2]\n")
    argv = ["--sweep", str(spec), "--out-dir", str(tmp_path / "runs")]
    assert sweep.main(argv) == 0
    out = tmp_path / "runs" / "sw" / "sweep"
    rows = list(csv.DictReader((out / "results.csv").read_text().splitlines()))
    assert {(r["method"], float(r["k"])) for r in rows} == {(m, k) for m in sweep.METHODS for k in (0.8, 0.5)}
    for r in rows:
        assert abs(float(r["measured_sparsity_pct"]) - float(r["sparsity_pct"])) < 0.5, r
    assert (out / "accuracy_vs_sparsity.png").stat().st_size > 1000
    imp_rounds = sorted((tmp_path / "runs" / "sw" / "prune").glob("*/result.json"))
    assert len(imp_rounds) >= 2 * 4 + 3  # bip, hydra, omp, random x 2 points + IMP rounds 0.8, 0.64, 0.5
    pre = next((tmp_path / "runs" / "sw" / "pretrain").glob("*/rewind.pt"))
    assert pre.is_file()
    # a second invocation finds every result and trains nothing
    monkeypatch.setattr(loop, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    capsys.readouterr()
    assert sweep.main(argv) == 0
    assert "[sweep]" not in capsys.readouterr().out
    assert list(csv.DictReader((out / "results.csv").read_text().splitlines())) == rows
