"""Points of a run written as '<N>ep' (after epoch N) or '<N>it' (after iteration N), e.g. '2ep', '0it'."""

import re

_POINT = re.compile(r"(\d+)(ep|it)")


def parse_point(spec):
    """'2ep' -> ('ep', 2), '100it' -> ('it', 100); ValueError naming `spec` for anything else."""
    m = _POINT.fullmatch(spec)
    if not m:
        raise ValueError(f"{spec!r}: expected '<N>ep' or '<N>it', e.g. '2ep'")
    return m.group(2), int(m.group(1))
