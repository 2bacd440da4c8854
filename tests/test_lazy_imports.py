"""The diffusers import lock: a first import waits for a model load in progress; a resolved class does not."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import sys, threading, time
    from modules.lazy_imports import DIFFUSERS_IMPORT_LOCK, diffusers_attr

    assert "diffusers" not in sys.modules
    got = []
    with DIFFUSERS_IMPORT_LOCK:  # as the job worker holds it while loading a model
        thread = threading.Thread(target=lambda: got.append(diffusers_attr("EulerDiscreteScheduler")))
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive() and "diffusers" not in sys.modules, "the first import did not wait for the lock"
    thread.join(120)
    assert got and got[0].__name__ == "EulerDiscreteScheduler", got

    with DIFFUSERS_IMPORT_LOCK:  # once resolved, no waiting (another thread holding the lock does not matter)
        other = []
        thread = threading.Thread(target=lambda: other.append(diffusers_attr("EulerDiscreteScheduler")))
        thread.start()
        thread.join(5)
        assert other == got, other
    print("ok")
""")


def test_first_diffusers_import_waits_for_the_lock() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
