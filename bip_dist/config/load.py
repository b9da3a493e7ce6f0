"""Load an ExperimentConfig from YAML plus `key=value` overrides, rejecting anything unknown or invalid.

Every error is one line that names the file, the dotted key and the value, and suggests the closest valid
key, because a typo in a multi-day run's config must fail before the first GPU-hour, not after it.
"""

import dataclasses
import difflib
import hashlib
import json
import math
import typing

from bip_dist.config.files import ConfigError, parse_value, read_config_file
from bip_dist.config.schema import ExperimentConfig
from bip_dist.fields import check_fields


def _coerce(value, tp, key, src):
    """Check `value` against annotation `tp`; YAML has already parsed numbers and booleans."""
    def bad(what):
        return ConfigError(f"{src}: {key} = {value!r} must be {what}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise bad("a mapping")
        return _build(tp, value, key + ".", src)
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(v, inner, key, src) for v in value)
    if tp is bool and not isinstance(value, bool):
        raise bad("true or false")
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise bad("an integer")
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        if not math.isfinite(value):  # YAML's .inf / .nan would pass every range check below
            raise bad("a finite number")
        return float(value)
    if tp is str and not isinstance(value, str):
        raise bad("a string")
    return value


def _build(cls, raw, prefix, src):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = typing.get_type_hints(cls)
    for name in raw:
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else \
                f" (valid: {', '.join(prefix + n for n in fields)})"
            raise ConfigError(f"{src}: unknown key '{prefix}{name}'{hint}")
    obj = cls(**{name: _coerce(value, types[name], prefix + name, src) for name, value in raw.items()})
    try:
        check_fields(obj, prefix)
        validate = getattr(obj, "validate", None)
        if callable(validate):
            validate()
    except ValueError as e:
        # validate() names a field of its section; sections also validated on their own (DataConfig, by
        # the loaders) name the whole key already.
        raise ConfigError(f"{src}: {'' if str(e).startswith(prefix) else prefix}{e}") from None
    return obj


def parse_override(text):
    """`a.b=c` -> (['a', 'b'], parsed c); the value is parsed as YAML so numbers and booleans keep types."""
    if "=" not in text:
        raise ConfigError(f"--set: expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    return key.strip().split("."), parse_value(raw)


def _merge(base, path, value):
    node = base
    for p in path[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set: '{'.'.join(path)}': '{p}' is not a section")
        node = nxt
    node[path[-1]] = value


def load_config(path=None, overrides=()):
    """Build a validated ExperimentConfig from an optional YAML file and `key=value` overrides."""
    raw, src = {}, "config"
    if path:
        src = str(path)
        raw = read_config_file(path)
    for text in overrides:
        keys, value = parse_override(text)
        _merge(raw, keys, value)
    _default_mode(raw)
    cfg = _build(ExperimentConfig, raw, "", src)
    _cross_check(cfg, src)
    return cfg


def _trainers():
    # Imported on use: the registry sits above the config layer (it builds steps, which read configs).
    from bip_dist.train.registry import TRAINERS
    return TRAINERS


def _default_mode(raw):
    """A config that names no mode runs in its trainer's."""
    TRAINERS = _trainers()
    trainer = raw.get("trainer", ExperimentConfig.trainer)
    if "mode" not in raw and isinstance(trainer, str) and trainer in TRAINERS:
        raw["mode"] = TRAINERS[trainer].mode


def _cross_check(cfg, src):
    name = cfg.name
    # The name is one folder under out_dir: a separator or '..' would put the run elsewhere (or onto
    # another run), a leading '.' would hide it among the runs moved aside by --overwrite.
    if not name or any(c in name for c in "/\\\0") or ".." in name or name[0] == ".":
        raise ConfigError(f"{src}: name = {name!r} must be one folder name: no '/', '\\' or '..', "
                          "not starting with '.'")
    TRAINERS = _trainers()
    if cfg.trainer not in TRAINERS:
        raise ConfigError(f"{src}: trainer = {cfg.trainer!r} is not one of {', '.join(TRAINERS)}")
    spec = TRAINERS[cfg.trainer]
    if cfg.mode != spec.mode:
        raise ConfigError(f"{src}: mode '{cfg.mode}' disagrees with trainer '{cfg.trainer}', which runs in "
                          f"mode '{spec.mode}' (set mode: {spec.mode}, or omit it)")
    pruned = cfg.prune.layer_type != "dense"
    if spec.prunes and not pruned:
        raise ConfigError(f"{src}: trainer '{cfg.trainer}' needs prune.layer_type other than 'dense'")
    if not spec.prunes and pruned:
        raise ConfigError(f"{src}: trainer '{cfg.trainer}' trains no mask; set prune.layer_type: dense "
                          f"(got {cfg.prune.layer_type!r})")
    # Trainers that learn the mask prune a trained model; a forgotten source_net would prune random weights.
    if spec.trains_scores and not cfg.source_net and not cfg.prune.from_scratch:
        raise ConfigError(f"{src}: trainer '{cfg.trainer}' with source_net = '' would prune random weights; "
                          f"set source_net to the pretrained model, or prune.from_scratch: true")
    if cfg.prune.score_init == "shared" and spec.trains_scores and not spec.step.shares_scores:
        raise ConfigError(f"{src}: prune.score_init = 'shared' is not defined for trainer '{cfg.trainer}'; "
                          f"use 'magnitude', or trainer 'bip' for shared scores")
    if cfg.prune.from_scratch and cfg.source_net:
        raise ConfigError(f"{src}: prune.from_scratch = true contradicts source_net = {cfg.source_net!r}; "
                          f"set one of them")
    from bip_dist.models import MODELS
    if cfg.model.arch not in MODELS:
        raise ConfigError(f"{src}: model.arch = {cfg.model.arch!r} is not a known model; "
                          f"valid: {', '.join(sorted(MODELS))}")


def config_to_dict(cfg):
    """Plain nested dict (tuples as lists) for YAML/JSON."""
    def conv(v):
        if isinstance(v, tuple):
            return [conv(x) for x in v]
        return v
    def walk(obj):
        return {f.name: walk(getattr(obj, f.name)) if dataclasses.is_dataclass(getattr(obj, f.name))
                else conv(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    return walk(cfg)


def non_default(cfg):
    """The settings that differ from the schema defaults, flattened to dotted keys."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, prefix + k + "."))
            else:
                out[prefix + k] = v
        return out
    mine, default = flat(config_to_dict(cfg)), flat(config_to_dict(ExperimentConfig()))
    # Where a run is written and how it is resumed do not change what it computes.
    ignore = {"out_dir", "ckpt.resume", "train.progress"}
    return {k: v for k, v in mine.items() if v != default.get(k) and k not in ignore}


def config_hash(cfg):
    """Short stable hash of the non-default settings, so reruns of one config find one folder."""
    blob = json.dumps(non_default(cfg), sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]
