"""Config loading: unknown keys name the closest valid key, bad values fail with one line, `base:` includes
merge, `--set` takes several overrides, and the generated reference matches the schema."""

import glob

import pytest

from bip_dist.config import ConfigError, config_hash, config_to_dict, load_config


def _write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_every_shipped_config_loads():
    # sweeps/ holds sweep definitions (bip-sweep), not experiment configs
    paths = sorted(p for p in glob.glob("configs/*/*.yaml") if "/sweeps/" not in p)
    stages = [p for p in paths if not p.rsplit("/", 1)[1].startswith("_")]
    assert len(stages) >= 20 and len(paths) > len(stages)
    for p in paths:
        cfg = load_config(p)
        assert cfg.mode in ("pretrain", "prune", "finetune")
    for p in stages:  # each stage file takes name, data and model from its folder's _base.yaml
        base = load_config(p.rsplit("/", 1)[0] + "/_base.yaml")
        cfg = load_config(p)
        assert (cfg.name, cfg.data, cfg.model) == (base.name, base.data, base.model), p


def test_overrides_keep_types():
    cfg = load_config("configs/digits/bip.yaml", ["prune.k=0.25", "bip.fused=false", "train.epochs=3"])
    assert cfg.prune.k == 0.25 and cfg.bip.fused is False and cfg.train.epochs == 3


@pytest.mark.parametrize("text,needle", [
    ("prune:\n  kk: 0.1\n", "unknown key 'prune.kk' (did you mean 'prune.k'?)"),
    ("optimm:\n  lr: 0.1\n", "unknown key 'optimm' (did you mean 'optim'?)"),
    ("trainer: bip\nprune:\n  layer_type: unstructured\n  k: 1.5\n", "prune.k = 1.5 must be <= 1.0"),
    ("trainer: bip\nprune:\n  layer_type: unstructured\n  k: 0\n", "prune.k = 0.0 must be > 0.0"),
    ("optim:\n  lr: -0.1\n", "optim.lr = -0.1 must be >= 0.0"),
    ("model:\n  arch: resnet99\n", "model.arch = 'resnet99' is not a known model; valid:"),
    ("prune:\n  layer_type: blocky\n", "prune.layer_type = 'blocky' is not one of"),
    ("bip:\n  fused: 'yes'\n", "bip.fused = 'yes' must be true or false"),
    ("train:\n  epochs: 2.5\n", "train.epochs = 2.5 must be an integer"),
    ("data: 3\n", "data = 3 must be a mapping"),
    ("trainer: bip\n", "trainer 'bip' needs prune.layer_type other than 'dense'"),
    ("trainer: bipp\n", "trainer = 'bipp' is not one of dense,"),
    ("mode: pretrain\ntrainer: hydra\nprune:\n  layer_type: unstructured\n",
     "mode 'pretrain' disagrees with trainer 'hydra', which runs in mode 'prune'"),
    ("data:\n  root: ''\n", ".yaml: data.root = '' needs data.train_file and data.val_file"),
    ("data:\n  batch_size: 0\n", ".yaml: data.batch_size = 0 must be >= 1"),
    ("baseline:\n  save_rewind: 3x\n", "baseline.save_rewind = '3x': expected '<N>ep' or '<N>it'"),
])
def test_bad_input_one_line(tmp_path, text, needle):
    p = _write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert needle in msg and str(p) in msg and "\n" not in msg


def test_mode_is_the_trainers_when_omitted():
    from bip_dist.train.registry import TRAINERS
    for name, spec in TRAINERS.items():
        sets = [f"trainer={name}", f"prune.layer_type={'unstructured' if spec.prunes else 'dense'}"]
        sets += ["prune.from_scratch=true"] if spec.trains_scores else []
        assert load_config(None, sets).mode == spec.mode


def test_override_unknown_key():
    with pytest.raises(ConfigError, match=r"unknown key 'prune.ratio'"):
        load_config(None, ["prune.ratio=0.1"])


def test_missing_file():
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("configs/nope.yaml")


def test_hash_depends_only_on_settings():
    a = load_config("configs/digits/bip.yaml")
    b = load_config("configs/digits/bip.yaml", ["out_dir=elsewhere"])
    c = load_config("configs/digits/bip.yaml", ["prune.k=0.2"])
    assert config_hash(a) == config_hash(b) != config_hash(c)


def test_worker_cli_reports_bad_key(capsys):
    from launcher.worker import main
    assert main(["--config", "configs/digits/bip.yaml", "--set", "prune.kk=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "prune.kk" in err and "prune.k" in err


def test_set_takes_several_overrides_per_flag(capsys):
    from launcher.worker import main, parse_args
    args = parse_args(["--set", "prune.k=0.3", "train.epochs=4", "--config", "c.yaml", "--set", "seed=5"])
    assert args.overrides == ["prune.k=0.3", "train.epochs=4", "seed=5"]
    assert main(["--config", "configs/digits/bip.yaml", "--print-config", "--set", "prune.k=0.3",
                 "train.epochs=4"]) == 0
    out = capsys.readouterr().out
    assert "k: 0.3" in out and "epochs: 4" in out


# --- base: includes ---------------------------------------------------------------------------------------

def test_base_deep_merges_and_file_wins(tmp_path):
    (tmp_path / "shared").mkdir()
    _write(tmp_path / "shared", "name: b\nseed: 7\ndata:\n  dataset: digits\n  root: data/digits\n"
           "  batch_size: 32\noptim:\n  milestones: [0.2, 0.4]\n", "base.yaml")
    p = _write(tmp_path, "base: shared/base.yaml\nseed: 9\ndata:\n  batch_size: 16\noptim:\n"
               "  milestones: [0.6]\n")
    cfg = load_config(p, ["data.workers=1"])
    assert (cfg.name, cfg.seed) == ("b", 9)  # from the base; the including file wins
    assert (cfg.data.dataset, cfg.data.root, cfg.data.batch_size, cfg.data.workers) == \
        ("digits", "data/digits", 16, 1)  # section merged key by key, --set on top
    assert cfg.optim.milestones == (0.6,)  # lists replace, they do not concatenate
    flat = config_to_dict(load_config(_write(tmp_path, "name: b\nseed: 9\ndata:\n  dataset: digits\n"
                                             "  root: data/digits\n  batch_size: 16\n  workers: 1\n"
                                             "optim:\n  milestones: [0.6]\n", "flat.yaml")))
    assert config_to_dict(cfg) == flat


@pytest.mark.parametrize("files,needle", [
    ({"c.yaml": "base: c.yaml\n"}, "base = 'c.yaml' includes the file itself"),
    ({"c.yaml": "base: b.yaml\n", "b.yaml": "base: c.yaml\n"}, "b.yaml: base = 'c.yaml': cycle with"),
    ({"c.yaml": "base: b.yaml\n", "b.yaml": "base: a.yaml\n", "a.yaml": "seed: 1\n"},
     "an included file cannot include another"),
    ({"c.yaml": "base: nope.yaml\n"}, "c.yaml: base = 'nope.yaml': no such file"),
    ({"c.yaml": "base: [a.yaml]\n"}, "must be the path of a YAML file"),
    ({"c.yaml": "base: b.yaml\n", "b.yaml": "- 1\n"}, "b.yaml: top level must be a mapping"),
])
def test_base_refuses_with_one_line(tmp_path, files, needle):
    for name, text in files.items():
        _write(tmp_path, text, name)
    with pytest.raises(ConfigError) as e:
        load_config(tmp_path / "c.yaml")
    assert needle in str(e.value) and "\n" not in str(e.value)


# --- source_net: runs/NAME/pretrain/<hash>/final.pt ----------------------------------------------------------

def test_hash_placeholder_names_the_one_finished_run(tmp_path):
    from bip_dist.config.source import resolve_source_net
    cfg = load_config("configs/digits/bip.yaml", [f"source_net={tmp_path}/demo/pretrain/<hash>/final.pt"])
    with pytest.raises(ConfigError, match="no run has written that file yet"):
        resolve_source_net(cfg)
    for h in ("aaa", "bbb"):
        (tmp_path / "demo" / "pretrain" / h).mkdir(parents=True)
    (tmp_path / "demo" / "pretrain" / "aaa" / "final.pt").write_bytes(b"")
    assert resolve_source_net(cfg).source_net == str(tmp_path / "demo" / "pretrain" / "aaa" / "final.pt")
    (tmp_path / "demo" / "pretrain" / "bbb" / "final.pt").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"2 runs match \(aaa, bbb\); choose one with --set source_net="):
        resolve_source_net(cfg)
    plain = load_config("configs/digits/bip.yaml", ["source_net=x.pt"])
    assert resolve_source_net(plain) is plain


# --- the generated reference -----------------------------------------------------------------------------

def test_config_reference_page_is_current():
    from bip_dist.config.docs import DOC, render
    text = DOC.read_text()
    assert render(text) == text, "regenerate it: python -m bip_dist.config.docs"
    assert "`prune.from_scratch`" in text


def test_shared_scores_refused_where_the_step_does_not_share():
    """First-order BiP updates both levels from one point: one shared variable has no defined update."""
    sets = ["trainer=bip_first_order", "prune.layer_type=unstructured", "prune.from_scratch=true",
            "prune.score_init=shared"]
    with pytest.raises(ConfigError, match=r"prune.score_init = 'shared' is not defined for trainer "
                                          r"'bip_first_order'") as e:
        load_config(None, sets)
    assert "\n" not in str(e.value)
    for trainer in ("bip", "hydra"):
        assert load_config(None, [f"trainer={trainer}", *sets[1:]]).prune.score_init == "shared"
