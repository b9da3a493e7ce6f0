"""Load an ExperimentConfig from YAML plus `key=value` overrides, rejecting anything unknown or invalid.

Every error is one line that names the file, the dotted key and the value, and suggests the closest valid
key, because a typo in a multi-day run's config must fail before the first GPU-hour, not after it.
"""

import dataclasses
import difflib
import hashlib
import json
import typing
from pathlib import Path

import yaml

from bip_dist.config.schema import ExperimentConfig
from bip_dist.train.registry import TRAINERS


class ConfigError(ValueError):
    """A bad config key or value; the message is one line naming the key."""


def _field_types(cls):
    return typing.get_type_hints(cls)


def _coerce(value, tp, key, src):
    """Check `value` against annotation `tp`; YAML has already parsed numbers and booleans."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{src}: '{key}' must be a mapping, got {value!r}")
        return _build(tp, value, key + ".", src)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{src}: '{key}' must be a list, got {value!r}")
        inner = typing.get_args(tp)[0]
        return tuple(_coerce(v, inner, key, src) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{src}: '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{src}: '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{src}: '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{src}: '{key}' must be a string, got {value!r}")
        return value
    return value


def _check(f, value, key, src):
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{src}: '{key}' = {value!r} is not one of {', '.join(map(str, meta['choices']))}")
    if "min" in meta and value < meta["min"]:
        raise ConfigError(f"{src}: '{key}' = {value!r} must be >= {meta['min']}")
    if "gt" in meta and value <= meta["gt"]:
        raise ConfigError(f"{src}: '{key}' = {value!r} must be > {meta['gt']}")
    if "max" in meta and value > meta["max"]:
        raise ConfigError(f"{src}: '{key}' = {value!r} must be <= {meta['max']}")


def _build(cls, raw, prefix, src):
    fields = {f.name: f for f in dataclasses.fields(cls)}
    types = _field_types(cls)
    for name in raw:
        if name not in fields:
            close = difflib.get_close_matches(name, list(fields), n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else \
                f" (valid: {', '.join(prefix + n for n in fields)})"
            raise ConfigError(f"{src}: unknown key '{prefix}{name}'{hint}")
    kwargs = {}
    for name, value in raw.items():
        key = prefix + name
        kwargs[name] = _coerce(value, types[name], key, src)
        if not dataclasses.is_dataclass(types[name]):
            _check(fields[name], kwargs[name], key, src)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        try:
            validate()
        except ValueError as e:
            # Sections validated on their own too (DataConfig by the loaders) already name their keys.
            where = "" if prefix and str(e).startswith(prefix) else f"{prefix.rstrip('.') or 'config'}: "
            raise ConfigError(f"{src}: {where}{e}") from None
    return obj


def parse_override(text):
    """`a.b=c` -> (['a', 'b'], parsed c); the value is parsed as YAML so numbers and booleans keep types."""
    if "=" not in text:
        raise ConfigError(f"--set: expected key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


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
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{src}: no such config file")
        try:
            raw = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{src}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{src}: top level must be a mapping")
    for text in overrides:
        keys, value = parse_override(text)
        _merge(raw, keys, value)
    _default_mode(raw)
    cfg = _build(ExperimentConfig, raw, "", src)
    _cross_check(cfg, src)
    return cfg


def _default_mode(raw):
    """A config that names no mode runs in its trainer's."""
    trainer = raw.get("trainer", ExperimentConfig.trainer)
    if "mode" not in raw and isinstance(trainer, str) and trainer in TRAINERS:
        raw["mode"] = TRAINERS[trainer].mode


def _cross_check(cfg, src):
    spec = TRAINERS[cfg.trainer]  # a known name: checked against the schema's choices
    if cfg.mode != spec.mode:
        raise ConfigError(f"{src}: mode '{cfg.mode}' disagrees with trainer '{cfg.trainer}', which runs in "
                          f"mode '{spec.mode}' (set mode: {spec.mode}, or omit it)")
    pruned = cfg.prune.layer_type != "dense"
    if spec.prunes and not pruned:
        raise ConfigError(f"{src}: trainer '{cfg.trainer}' needs prune.layer_type other than 'dense'")
    if not spec.prunes and pruned:
        raise ConfigError(f"{src}: trainer '{cfg.trainer}' trains no mask; set prune.layer_type: dense "
                          f"(got {cfg.prune.layer_type!r})")
    from bip_dist.models import MODELS
    if cfg.model.arch not in MODELS:
        raise ConfigError(f"{src}: 'model.arch' = {cfg.model.arch!r} is not a known model; "
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
