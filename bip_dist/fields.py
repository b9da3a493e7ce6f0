"""Declarative config fields: help text plus the checks every config section shares.

A field's metadata holds its help text and its allowed values (`choices`, `min`, `gt` = strictly greater,
`max`). The loader (bip_dist.config) and sections validated on their own (DataConfig, by the loaders) read
them here, so a range is written once, next to the field it limits.
"""

import dataclasses
import operator

# Declared bounds: metadata key, the symbol shown to users, the test a valid value passes.
BOUNDS = (("min", ">=", operator.ge), ("gt", ">", operator.gt), ("max", "<=", operator.le))


def opt(default, help, **checks):
    """A dataclass field with help text and declarative checks (`choices`, `min`, `gt`, `max`)."""
    return dataclasses.field(default=default, metadata={"help": help, **checks})


def problem(f, value):
    """Why `value` breaks the declared checks of field `f` ('must be >= 1', ...), or None."""
    meta = f.metadata
    if "choices" in meta and value not in meta["choices"]:
        return f"is not one of {', '.join(map(str, meta['choices']))}"
    for key, sym, ok in BOUNDS:
        if key in meta and not ok(value, meta[key]):
            return f"must be {sym} {meta[key]}"
    return None


def check_fields(obj, prefix=""):
    """Raise ValueError naming `prefix + field` and its value for the first field of dataclass `obj`
    (nested sections excluded) that breaks its declared checks."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            continue
        why = problem(f, value)
        if why:
            raise ValueError(f"{prefix}{f.name} = {value!r} {why}")
