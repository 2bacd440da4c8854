"""No import circles among the project's own modules (issue 24.4), checked with the shared tool that lists
them (imports inside functions included); skipped where the shared folder is not beside the checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TOOL = REPO.parent / "shared" / "tools" / "import_cycles.py"


@pytest.mark.skipif(not TOOL.is_file(), reason=f"{TOOL} is not here (the shared folder sits beside the checkout)")
def test_no_import_circles() -> None:
    run = subprocess.run([sys.executable, str(TOOL), "."], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
