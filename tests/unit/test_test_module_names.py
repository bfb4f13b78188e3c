"""The test suite's own layout: pytest imports test modules by their base name (the suites have no
__init__.py), so two test files of the same name in different folders stop the whole run at
collection. Checked here, where a run of tests/unit alone already sees it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_no_two_test_modules_share_a_name():
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
