"""promtool and amtool as the tests run them: a missing tool fails the test, it never skips it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_tool(name: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run promtool (Debian package `prometheus`) or amtool (`prometheus-alertmanager`); it must exit 0."""
    executable = shutil.which(name)
    if executable is None:
        pytest.fail(f"{name} is not installed; it comes with Debian's "
                    f"{'prometheus-alertmanager' if name == 'amtool' else 'prometheus'} package")
    result = subprocess.run(
        [executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, (
        f"{name} {' '.join(map(str, args))} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
    )
    return result
