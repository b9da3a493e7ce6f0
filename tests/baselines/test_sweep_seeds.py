"""bip-sweep with seeds: a row per method x k x seed, seconds_to_k (IMP's rounds summed), the summary over
seeds, IMP rounds through the sweep's points, evaluation once per stage, and a sweep continued seed by seed."""

import csv
import json
from pathlib import Path

import pytest
import yaml

from bip_dist.config import load_config
from tests.helpers import ROOT, loaders


def _csv(path):
    return list(csv.DictReader(path.read_text().splitlines()))


def _evaluations(run_dir):
    lines = [json.loads(x) for x in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return sum(1 for x in lines if x.get("kind") == "epoch" and "val_top1" in x)


def test_digits_sweep_with_seeds_continues_and_summarises(tmp_path, capsys, tiny_models, monkeypatch):
    """configs/sweeps/digits_seeds.yaml on the tiny model and in-memory data: seed 0 first, then seeds 0, 1
    (only seed 1's stages run; seed 0's rows come back unchanged)."""
    from launcher import sweep
    monkeypatch.chdir(ROOT)
    argv = ["--sweep", "configs/sweeps/digits_seeds.yaml", "--methods", "bip,bip_old_default,hydra,imp",
            "--ks", "0.5,0.2", "--out-dir", str(tmp_path / "runs"), "--set", "model.arch=tinynet",
            "data.batch_size=32", "log.tensorboard=false", "--point-set", "train.epochs=1",
            "--stage-set", "pretrain:train.epochs=3", "--stage-set", "bip:train.epochs=2"]
    out = tmp_path / "runs" / "digits_seeds" / "sweep"
    with loaders.in_train_loop():
        assert sweep.main([*argv, "--seeds", "0"]) == 0
        first = _csv(out / "results.csv")
        capsys.readouterr()
        assert sweep.main([*argv, "--seeds", "0,1"]) == 0
    ran = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[sweep] ")]
    assert ran and all("seed=1" in x for x in ran), ran  # seed 0 and the pretrain were reused
    rows = _csv(out / "results.csv")
    assert rows[:len(first)] == first
    methods = ("bip", "bip_old_default", "hydra", "imp")
    assert sorted((r["method"], float(r["k"]), r["seed"]) for r in rows) == \
        sorted((m, k, s) for m in methods for k in (0.5, 0.2) for s in "01")
    by = {(r["method"], float(r["k"]), r["seed"]): r for r in rows}
    for seed in "01":
        imp = [by["imp", k, seed] for k in (0.5, 0.2)]
        # IMP's rounds are the sweep's points (1 -> 0.5 -> 0.2), and its cost to 0.2 counts both
        cfg = yaml.safe_load((Path(imp[1]["run_dir"]) / "config.yaml").read_text())
        assert cfg["baseline"]["mask_from"] == str(Path(imp[0]["run_dir"]) / "final.pt")
        assert float(imp[1]["seconds_to_k"]) == pytest.approx(
            float(imp[0]["seconds"]) + float(imp[1]["seconds"]), abs=0.15)
        for m in ("bip", "hydra"):
            r = by[m, 0.2, seed]
            assert r["seconds_to_k"] == r["seconds"] and float(r["seconds"]) > 0
        hydra = by["hydra", 0.2, seed]  # its seconds hold the score stage and the finetune
        assert float(hydra["seconds"]) > float((Path(hydra["run_dir"]) / "sweep_seconds.txt").read_text())
    assert by["bip", 0.5, "0"]["run_dir"] != by["bip", 0.5, "1"]["run_dir"]
    assert all(r["holdout_top1"] == "" for r in rows)  # the in-memory data has no holdout split
    # --report-only trains nothing: seed 2 has no finished stage, so the table is the one above
    with loaders.in_train_loop():
        assert sweep.main([*argv, "--seeds", "0,1,2", "--report-only"]) == 0
    assert not [x for x in capsys.readouterr().out.splitlines() if x.startswith("[sweep] ")]
    assert _csv(out / "results.csv") == rows
    # a pruning stage of 2 epochs evaluated once, at its end (the pretrain keeps its per-epoch curve)
    assert _evaluations(by["bip", 0.5, "1"]["run_dir"]) == 1
    pre = next((tmp_path / "runs" / "digits_seeds" / "pretrain").iterdir())
    assert _evaluations(pre) == 3
    summary = _csv(out / "summary.csv")
    assert len(summary) == len(methods) * 2 and {s["n_seeds"] for s in summary} == {"2"}
    s = next(x for x in summary if x["method"] == "hydra" and float(x["k"]) == 0.2)
    vals = [float(by["hydra", 0.2, seed]["val_top1"]) for seed in "01"]
    assert float(s["val_top1_mean"]) == pytest.approx(sum(vals) / 2, abs=0.01)
    assert (float(s["val_top1_min"]), float(s["val_top1_max"])) == (min(vals), max(vals))
    assert s["holdout_top1_mean"] == ""
    md = (out / "summary.md").read_text()
    assert "over 2 seed(s)" in md and "seconds to reach k" in md and "holdout" not in md
    for png in ("accuracy_vs_sparsity.png", "wall_time.png"):
        assert (out / png).stat().st_size > 1000


def test_summary_of_seeds_with_a_holdout_split():
    from launcher import sweep_table
    res = [{"val_top1": 90.0, "holdout_top1": 88.0, "run_dir": "a"},
           {"val_top1": 92.0, "holdout_top1": 91.0, "run_dir": "b"},
           {"val_top1": 97.0, "holdout_top1": 95.0, "run_dir": "c"}]
    rows = [sweep_table.row("bip", 0.1, seed, r, 10.0 + seed, 20.0 + seed) for seed, r in enumerate(res)]
    rows.append(sweep_table.row("omp", 0.1, 0, {"val_top1": 50.0, "run_dir": "d"}, 3.0, 3.0))
    bip, omp = sweep_table.summarise(rows)
    assert (bip["n_seeds"], bip["val_top1_mean"], bip["val_top1_std"]) == (3, 93.0, 3.61)  # sample std
    assert (bip["holdout_top1_min"], bip["holdout_top1_max"], bip["seconds_to_k_mean"]) == (88.0, 95.0, 21.0)
    assert (omp["val_top1_std"], omp["holdout_top1_mean"]) == ("", "")  # one seed; no holdout split
    md = sweep_table.markdown([bip, omp], 91.5)
    assert "| 90.00 | 93.00 ± 3.61 (90.00..97.00) | 50.00 |" in md
    assert "holdout top-1" in md and "91.50" in md


def test_imp_rounds_lth_and_points():
    from launcher.sweep import imp_rounds
    assert imp_rounds([0.1, 0.2, 0.035], "points", 0.2) == [0.2, 0.1, 0.035]
    assert imp_rounds([0.512], "lth", 0.2) == [0.8, 0.64, 0.512]


@pytest.mark.parametrize("line, message", [
    ("seeds: [0, x]", "seeds '0,x': expected distinct integers >= 0"),
    ("seeds: [1, 1]", "seeds '1,1': expected distinct integers >= 0"),
    ("imp_rounds: every", "imp_rounds 'every': expected one of lth, points")])
def test_bad_sweep_keys_named(tmp_path, line, message):
    from launcher import sweep
    spec = tmp_path / "s.yaml"
    spec.write_text(f"configs: x\n{line}\n")
    with pytest.raises(SystemExit, match=f"^bip-sweep: {spec}: {message}"):
        sweep.parse_args(["--sweep", str(spec)])


@pytest.mark.parametrize("name", ["digits_seeds", "fashion"])
def test_seeded_sweep_files_load_every_stage(name, monkeypatch):
    """Every method's stage configs load with the sweep's overrides; every method gets the same epochs per
    stage except first-order BiP (equal compute: more images); the old-default variant differs only by its
    score formulation."""
    from launcher import sweep
    monkeypatch.chdir(ROOT)
    args = sweep.parse_args(["--sweep", f"configs/sweeps/{name}.yaml"])
    if not (ROOT / args.configs).is_dir():
        pytest.skip(f"{args.configs} is not in this checkout")
    sw = sweep.Sweep(args)
    assert args.imp_rounds == "points" and len(args.seeds) >= 2
    assert args.ks == "0.2,0.1,0.05,0.035,0.02,0.01"
    images = {}
    for method in args.methods.split(","):
        kind = sw.variants.get(method, method)
        stages = [method, "finetune"] if kind == "hydra" else [method]
        for stage in stages:
            path, implied = sw.config(kind if stage == method else stage)
            own = [*args.set, *sw.point, *sw.per_stage.get(stage, [])]
            cfg = load_config(path, [*implied, "source_net=x.pt", *own, "seed=1"])
            assert cfg.train.eval_every >= cfg.train.epochs and cfg.seed == 1
            per_step = 2.25 if cfg.trainer == "bip" else 1.0
            n = cfg.data.subset if getattr(cfg.data, "subset", 0) else 1
            images[stage] = cfg.train.epochs * n * per_step
    budget = images["omp"]
    assert {images[m] for m in ("hydra", "finetune", "imp", "random", "omp")} == {budget}
    assert images["bip"] == images["bip_old_default"] == 2.25 * budget
    assert 2.25 * budget <= images["bip_first_order"] <= 2.5 * budget
