"""Reading config YAML: one-level `base:` includes, numbers written as `1e-4`, and no key given twice.

PyYAML follows YAML 1.1, where `1e-4` and `1.0e6` are strings (a float needs a dot and a signed
exponent); config files and `--set` values read them as the numbers every other tool takes them for.
"""

import re
from pathlib import Path

import yaml


class ConfigError(ValueError):
    """A bad config file, key or value; the message is one line naming it."""


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads exponent notation without a dot or exponent sign as a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


MERGE_TAG = "tag:yaml.org,2002:merge"


def _check_unique_keys(node, src, path="", seen_nodes=None):
    """ConfigError naming the first key stated twice in one mapping of the YAML `node` tree, with both
    line numbers: YAML itself keeps the last silently, so a second `optim:` would drop the first."""
    seen_nodes = set() if seen_nodes is None else seen_nodes
    if id(node) in seen_nodes:  # an alias: checked where its anchor is (and aliases may form cycles)
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.tag != MERGE_TAG:  # `<<:` merges may be overridden
                name = path + str(key.value)
                if key.value in seen:
                    raise ConfigError(f"{src}: key '{name}' is given twice (lines {seen[key.value]} and "
                                      f"{key.start_mark.line + 1}); keep one")
                seen[key.value] = key.start_mark.line + 1
                _check_unique_keys(value, src, name + ".", seen_nodes)
            else:
                _check_unique_keys(value, src, path, seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _check_unique_keys(item, src, path, seen_nodes)


def parse_value(text):
    """A `--set` value as YAML would read it in a file (numbers and booleans keep their types)."""
    if text == "":
        return ""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


def _read(path, src):
    loader = _Loader(Path(path).read_text())
    try:
        node = loader.get_single_node()
        _check_unique_keys(node, src)
        raw = (loader.construct_document(node) if node is not None else None) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{src}: not valid YAML ({str(e).splitlines()[0]})") from None
    finally:
        loader.dispose()
    if not isinstance(raw, dict):
        raise ConfigError(f"{src}: top level must be a mapping")
    return raw


def deep_merge(base, over):
    """`base` with `over` on top: mappings merge key by key, anything else in `over` replaces."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_config_file(path):
    """The mapping a config file states: its own keys deep-merged over those of its `base:` file (a path
    relative to it). Includes are one level deep, so every value is found in at most two files."""
    src = str(path)
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{src}: no such config file")
    raw = _read(p, src)
    if "base" not in raw:
        return raw
    ref = raw.pop("base")
    if not isinstance(ref, str) or not ref:
        raise ConfigError(f"{src}: base = {ref!r} must be the path of a YAML file, relative to this one")
    bp = p.parent / ref
    if bp.resolve() == p.resolve():
        raise ConfigError(f"{src}: base = {ref!r} includes the file itself")
    if not bp.is_file():
        raise ConfigError(f"{src}: base = {ref!r}: no such file {bp}")
    base = _read(bp, str(bp))
    if "base" in base:
        back = (bp.parent / str(base["base"])).resolve() == p.resolve()
        raise ConfigError(f"{bp}: base = {base['base']!r}: "
                          + (f"cycle with {src}" if back else f"an included file cannot include another "
                             f"(included by {src}; includes are one level deep)"))
    return deep_merge(base, raw)
