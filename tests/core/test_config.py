"""Config loading: unknown keys name the closest valid key, bad values fail with one line."""

import pytest

from bip_dist.config import ConfigError, config_hash, load_config


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_every_shipped_config_loads():
    import glob
    # sweeps/ holds sweep definitions (bip-sweep), not experiment configs
    paths = sorted(p for p in glob.glob("configs/*/*.yaml") if "/sweeps/" not in p)
    assert len(paths) >= 20
    for p in paths:
        cfg = load_config(p)
        assert cfg.mode in ("pretrain", "prune", "finetune")


def test_overrides_keep_types():
    cfg = load_config("configs/digits/bip.yaml", ["prune.k=0.25", "bip.fused=false", "train.epochs=3"])
    assert cfg.prune.k == 0.25 and cfg.bip.fused is False and cfg.train.epochs == 3


@pytest.mark.parametrize("text,needle", [
    ("prune:\n  kk: 0.1\n", "unknown key 'prune.kk' (did you mean 'prune.k'?)"),
    ("optimm:\n  lr: 0.1\n", "unknown key 'optimm' (did you mean 'optim'?)"),
    ("trainer: bip\nprune:\n  layer_type: unstructured\n  k: 1.5\n", "'prune.k' = 1.5 must be <= 1.0"),
    ("trainer: bip\nprune:\n  layer_type: unstructured\n  k: 0\n", "'prune.k' = 0.0 must be > 0.0"),
    ("optim:\n  lr: -0.1\n", "'optim.lr' = -0.1 must be >= 0.0"),
    ("model:\n  arch: resnet99\n", "'model.arch' = 'resnet99' is not a known model; valid:"),
    ("prune:\n  layer_type: blocky\n", "'prune.layer_type' = 'blocky' is not one of"),
    ("bip:\n  fused: 'yes'\n", "'bip.fused' must be true or false"),
    ("train:\n  epochs: 2.5\n", "'train.epochs' must be an integer"),
    ("trainer: bip\n", "trainer 'bip' needs prune.layer_type other than 'dense'"),
    ("trainer: bipp\n", "'trainer' = 'bipp' is not one of dense,"),
    ("mode: pretrain\ntrainer: hydra\nprune:\n  layer_type: unstructured\n",
     "mode 'pretrain' disagrees with trainer 'hydra', which runs in mode 'prune'"),
    ("data:\n  root: ''\n", ".yaml: data.root = '' needs data.train_file and data.val_file"),
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
        layer = "unstructured" if spec.prunes else "dense"
        assert load_config(None, [f"trainer={name}", f"prune.layer_type={layer}"]).mode == spec.mode


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
