"""Markdown reference of every config key, generated from the schema: `python -m bip_dist.config.docs`."""

import dataclasses
import typing

from bip_dist.config.schema import ExperimentConfig


def _rows(cls, prefix=""):
    types = typing.get_type_hints(cls)
    default = cls()
    for f in dataclasses.fields(cls):
        value = getattr(default, f.name)
        if dataclasses.is_dataclass(value):
            yield from _rows(type(value), prefix + f.name + ".")
            continue
        checks = []
        if "choices" in f.metadata:
            checks.append(" \\| ".join(map(str, f.metadata["choices"])))
        for key, sym in (("min", ">="), ("gt", ">"), ("max", "<=")):
            if key in f.metadata:
                checks.append(f"{sym} {f.metadata[key]}")
        tp = getattr(types[f.name], "__name__", str(types[f.name])).replace("typing.", "")
        help_text = f.metadata.get("help", "").replace("|", "\\|")
        yield (f"`{prefix}{f.name}`", tp, f"`{value!r}`", ", ".join(checks), help_text)


def markdown():
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(ExperimentConfig)]
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown())
