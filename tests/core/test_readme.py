"""The README stays the user's manual: it carries the generated config reference, every console script
and every make target."""

import re
from pathlib import Path

from bip_dist.config.docs import markdown

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_config_reference_is_current():
    assert markdown() in README, "regenerate the table: python -m bip_dist.config.docs"


def test_every_console_script_is_documented():
    scripts = re.findall(r'"([\w-]+) = ', (ROOT / "setup.py").read_text())
    assert scripts
    missing = [s for s in scripts if f"`{s}" not in README]
    assert not missing


def test_every_make_target_is_documented():
    text = (ROOT / "Makefile").read_text() + "".join(p.read_text() for p in (ROOT / "mk").glob("*.mk"))
    phony = set()
    for line in re.findall(r"^\.PHONY:(.*)$", text, re.M):
        phony.update(line.split())
    missing = [t for t in sorted(phony) if f"make {t}" not in README]
    assert not missing
