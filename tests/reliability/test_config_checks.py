"""Bad config values stop bip-train before anything runs: one line naming the key and the value, exit 2."""

import pytest

from bip_dist.config import ConfigError, load_config

PRUNE = ["mode=prune", "prune.layer_type=unstructured", "prune.k=0.5"]


def _refused(overrides, needle, path=None):
    """The config is refused with one line holding `needle`, and bip-train exits 2 printing that line."""
    with pytest.raises(ConfigError) as e:
        load_config(path, overrides)
    msg = str(e.value)
    assert needle in msg and "\n" not in msg, msg
    return msg


def _cli_refuses(capsys, overrides, needle):
    from launcher.worker import main
    assert main(["--config", "configs/digits/pretrain.yaml", "--set", *overrides]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.count("\n") == 0, err


@pytest.mark.parametrize("value,shown", [(".inf", "inf"), ("-.inf", "-inf"), (".nan", "nan"), ("1e999", "inf")])
def test_non_finite_numbers_are_refused(tmp_path, capsys, value, shown):
    _refused([f"optim.lr={value}"], f"optim.lr = {shown} must be a finite number")
    p = tmp_path / "c.yaml"
    p.write_text(f"optim:\n  lr: {value}\n")
    assert str(p) in _refused([], f"optim.lr = {shown} must be a finite number", p)
    _cli_refuses(capsys, [f"optim.lr={value}"], f"optim.lr = {shown} must be a finite number")


def test_non_finite_list_entry_is_refused():
    _refused(["optim.milestones=[0.5, .nan]"], "optim.milestones = nan must be a finite number")


@pytest.mark.parametrize("override,needle", [
    ("seed=-1", "seed = -1 must be >= 0"),
    ("seed=4294967296", "seed = 4294967296 must be <= 4294967295"),
    ("optim.momentum=1.5", "optim.momentum = 1.5 must be <= 1.0"),
    ("dist.bucket_mb=0", "dist.bucket_mb = 0.0 must be > 0.0"),
])
def test_out_of_range_numbers_are_refused(capsys, override, needle):
    _refused([override], needle)
    _cli_refuses(capsys, [override], needle)


@pytest.mark.parametrize("text,value", [("1e-4", 1e-4), ("1.0e6", 1e6), ("2E-3", 2e-3), (".5e1", 5.0),
                                        ("1.0e+6", 1e6), ("0.01", 0.01)])
def test_exponent_notation_is_a_number(tmp_path, text, value):
    assert load_config(None, [f"optim.lr={text}"]).optim.lr == value
    p = tmp_path / "c.yaml"
    p.write_text(f"optim:\n  lr: {text}\n  weight_decay: {text}\n")
    cfg = load_config(p)
    assert cfg.optim.lr == cfg.optim.weight_decay == value


def test_exponent_notation_is_not_an_integer():
    _refused(["train.epochs=1e2"], "train.epochs = 100.0 must be an integer")


@pytest.mark.parametrize("milestones", ["[0.75, 0.5]", "[0.5, 0.5]", "[0.0, 0.5]", "[0.5, 1.0]", "[-0.1]",
                                        "[30, 60]"])
def test_milestones_must_increase_inside_the_run(milestones):
    _refused([f"score_optim.milestones={milestones}"], "score_optim.milestones = ")
    msg = _refused([f"optim.milestones={milestones}"], "optim.milestones = ")
    assert "must be strictly increasing fractions of the run, each in (0, 1)" in msg


def test_valid_milestones_pass():
    cfg = load_config(None, ["optim.milestones=[0.3, 0.6, 0.9]", "score_optim.milestones=[]"])
    assert cfg.optim.milestones == (0.3, 0.6, 0.9) and cfg.score_optim.milestones == ()


@pytest.mark.parametrize("trainer", ["bip", "hydra"])
def test_bip_and_hydra_need_a_source_or_from_scratch(capsys, trainer):
    over = PRUNE + [f"trainer={trainer}"]
    _refused(over, f"trainer '{trainer}' with source_net = '' would prune random weights; set source_net "
                   f"to the pretrained model, or prune.from_scratch: true")
    _cli_refuses(capsys, over, "prune.from_scratch: true")
    assert load_config(None, over + ["prune.from_scratch=true"]).prune.from_scratch is True
    assert load_config(None, over + ["source_net=pre/final.pt"]).source_net == "pre/final.pt"
    _refused(over + ["source_net=pre/final.pt", "prune.from_scratch=true"],
             "prune.from_scratch = true contradicts source_net = 'pre/final.pt'; set one of them")


def test_source_net_with_pickled_objects_names_file_not_torch_advice(tmp_path):
    import argparse

    import torch

    from bip_dist.checkpoint.handover import load_source_net
    path = tmp_path / "foreign.pt"
    torch.save({"model": argparse.Namespace(lr=0.1), "meta": {}}, path)  # e.g. a training script's args
    with pytest.raises(ValueError) as e:
        load_source_net(str(path), torch.nn.Linear(2, 2), {"mode": "prune"})
    msg = str(e.value)
    assert msg.startswith(f"{path}: not a loadable checkpoint") and "argparse.Namespace" in msg, msg
    assert "weights_only" not in msg and "\n" not in msg and "\x1b" not in msg, msg
