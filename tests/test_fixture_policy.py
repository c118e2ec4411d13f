"""No test compares against a file written on another machine unless tests/fixtures/README.md says
what is compared and why it holds on every CPU, and the test is marked `foreign_fixtures` (so that
.ci/run runs it again under other CPU kernels)."""

from __future__ import annotations

import re

from conftest import REPO

FIXTURES = REPO / "tests" / "fixtures"


def test_every_fixture_file_is_listed_with_its_comparison():
    table = (FIXTURES / "README.md").read_text()
    listed = set()
    for row in re.findall(r"^\| (.+?) \|", table, re.MULTILINE)[1:]:  # past the header
        listed |= {path for pattern in row.split(", ") for path in FIXTURES.glob(pattern)}
    files = {p for p in FIXTURES.rglob("*") if p.is_file() and p.name != "README.md"}
    assert files, "tests/fixtures/ is empty: drop this test with the folder"
    assert not files - listed, f"not in tests/fixtures/README.md: {sorted(str(p.relative_to(FIXTURES)) for p in files - listed)}"


def test_every_test_reading_fixtures_is_marked_foreign_fixtures():
    readers = [p for p in (REPO / "tests").glob("test_*.py")
               if p.name != "test_fixture_policy.py" and '"fixtures"' in p.read_text()]
    assert readers
    unmarked = [p.name for p in readers if "foreign_fixtures" not in p.read_text()]
    assert not unmarked, f"read tests/fixtures/ without the foreign_fixtures mark: {unmarked}"
