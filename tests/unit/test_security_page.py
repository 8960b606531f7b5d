"""Every test the security page names exists: each line of the threat model is backed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "guide" / "security.md"
NAMED = re.compile(r"`(?:tests/(?:unit|integration)/)?(test_\w+\.py)::(test_\w+)`")


def _test_files() -> dict[str, Path]:
    return {p.name: p for p in (ROOT / "tests").rglob("test_*.py")}


def test_every_test_the_security_page_names_exists():
    files = _test_files()
    named = NAMED.findall(PAGE.read_text(encoding="utf-8"))
    assert len(named) >= 40  # the page backs its lines with tests, not prose
    missing = []
    for filename, test in named:
        path = files.get(filename)
        if path is None or not re.search(
            rf"^def {test}\(", path.read_text(encoding="utf-8"), re.MULTILINE
        ):
            missing.append(f"{filename}::{test}")
    assert missing == []


def test_every_row_of_the_security_tables_names_a_test():
    rows = [
        line
        for line in PAGE.read_text(encoding="utf-8").splitlines()
        if line.startswith("| ") and not line.startswith("| protects against")
    ]
    assert rows
    assert [row for row in rows if not NAMED.search(row)] == []
