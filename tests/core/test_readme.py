"""The README stays the user's entry point: it names every console script and every make target, and
links every page of docs/ (the config reference among them)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def test_every_docs_page_is_linked():
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert pages
    assert "](docs/configuration.md)" in README
    missing = [p for p in pages if f"](docs/{p})" not in README]
    assert not missing


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
