"""The import lock: a first diffusers import waits for a model load in progress; a resolved class does not; the
import hook serialises heavy imports so that no thread sees a half-imported module."""

from __future__ import annotations

import json
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


# --------------------------------------------------------------------------- the import hook
#
# Each scenario runs in a fresh interpreter on fake "heavy" packages written to a temp folder (their
# __init__ sleeps, then defines VALUE at the end), registered through install_import_hook's parameter.
# The same script runs once without the hook: there the peek and the loader's import do fail, which is how
# the hook's test was checked to be able to fail (test_without_the_hook_the_races_show).

FAKE_PACKAGES = {
    "slowpkg/__init__.py": "import time\ntime.sleep(1.0)\nVALUE = 42\n",
    "twinpkg/__init__.py": "import time\ntime.sleep(1.0)\nVALUE = 42\n",
    # the loader imports lib.models (slow) which needs lib.loaders, which a request thread started first;
    # loaders needs nothing of models at import time, so either order works in one thread
    "lib/__init__.py": "",
    "lib/models.py": "import time\ntime.sleep(1.0)\nfrom lib import loaders\nVALUE = loaders.VALUE + 1\n",
    "lib/loaders.py": "import time\ntime.sleep(0.3)\nVALUE = 1\n",
    # a genuine cross-thread cycle: loaders2 itself imports the half-executed models2
    "cyc/__init__.py": "",
    "cyc/models2.py": "import time\ntime.sleep(1.0)\nfrom cyc import loaders2\nVALUE = loaders2.VALUE + 1\n",
    "cyc/loaders2.py": "import cyc.models2\nVALUE = 1\n",
}

HOOK_SCRIPT = textwrap.dedent("""
    import json, sys, threading, time
    hooked = sys.argv[1] == "hook"
    sys.path.insert(0, sys.argv[2])
    if hooked:
        from modules.lazy_imports import install_import_hook
        install_import_hook(["slowpkg", "twinpkg", "lib", "cyc"])

    def run(*targets, timeout=30):
        out = [None] * len(targets)
        def call(i, target):
            try:
                out[i] = target()
            except BaseException as exc:
                out[i] = f"{type(exc).__name__}: {exc}"
        threads = [threading.Thread(target=call, args=(i, t), daemon=True) for i, t in enumerate(targets)]
        for i, thread in enumerate(threads):
            thread.start()
            time.sleep(0.2 if i == 0 else 0)  # the first thread (the loader) is inside the slow import
        for thread in threads:
            thread.join(timeout)
        return [("hung" if thread.is_alive() else value) for thread, value in zip(threads, out)]

    def import_value(name):
        module = __import__(name, fromlist=["VALUE"])
        return module.VALUE

    def peek(name):  # what /sdapi/v1/memory does with torch: no import, a look at the loaded module
        while name not in sys.modules:
            time.sleep(0.01)
        if hooked:  # the studio's way: modules.lazy_imports.loaded_module, never sys.modules directly
            from modules.lazy_imports import loaded_module
            return loaded_module(name).VALUE
        return sys.modules[name].VALUE

    results = {
        "peek": run(lambda: import_value("slowpkg"), lambda: peek("slowpkg")),
        "twins": run(lambda: import_value("twinpkg"), lambda: import_value("twinpkg")),
        "loader_needs_request_import": run(lambda: import_value("lib.models"), lambda: import_value("lib.loaders")),
        "cycle": run(lambda: import_value("cyc.models2"), lambda: import_value("cyc.loaders2")),
        "untouched": [("__getattr__" in sys.modules[name].__dict__) for name in ("slowpkg", "lib.models")],
    }
    print(json.dumps(results))
""")


def run_hook_script(tmp_path: Path, mode: str) -> dict:
    for name, text in FAKE_PACKAGES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    result = subprocess.run([sys.executable, "-c", HOOK_SCRIPT, mode, str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_with_the_hook_no_thread_sees_a_partial_module(tmp_path: Path) -> None:
    results = run_hook_script(tmp_path, "hook")
    assert results["peek"] == [42, 42], results  # the peek waited for the import to finish
    assert results["twins"] == [42, 42], results
    # the loader (first thread) needed a module the second thread had started and that waited for the lock:
    # the second thread goes ahead for it, no deadlock, both complete (without the hook this one was fine too;
    # with a hook that only waited it would hang, which is why every wait checks who waits on whom)
    assert results["loader_needs_request_import"] == [2, 1], results
    # a genuine cross-thread cycle: the loader's import completes; the thread that started the other half meets
    # the loader's half-executed module as a one-thread circular import would (through importlib.import_module
    # CPython may raise its deadlock error there instead; see modules.lazy_imports), and nothing hangs
    loader, request = results["cycle"]
    assert loader == 2, results
    assert request == 1 or "deadlock detected" in str(request), results
    assert results["untouched"] == [False, False], results  # no library module namespace is touched


def test_without_the_hook_the_races_show(tmp_path: Path) -> None:
    """The scenarios above do reproduce the races: the peek sees the half-initialised module, and in the
    cycle CPython's deadlock avoidance hands the loader the other thread's half-executed module."""
    results = run_hook_script(tmp_path, "nohook")
    assert "partially initialized module 'slowpkg'" in str(results["peek"][1]), results
    assert results["twins"] == [42, 42], results  # plain concurrent imports were always safe
    loader = str(results["cycle"][0])
    assert "partially initialized module 'cyc.loaders2'" in loader or "deadlock detected" in loader, results


def test_installing_the_hook_imports_nothing_heavy_and_keeps_loader_types() -> None:
    script = textwrap.dedent("""
        import importlib.machinery, sys
        from modules.lazy_imports import HEAVY_PACKAGES, install_import_hook
        finder = install_import_hook()
        assert install_import_hook() is finder and sys.meta_path[0] is finder
        heavy = sorted(name for name in sys.modules if name.partition(".")[0] in HEAVY_PACKAGES)
        assert not heavy, heavy
        import safetensors.torch
        assert isinstance(sys.modules["torch"].__loader__, importlib.machinery.SourceFileLoader)
        assert type(sys.modules["torch"].__loader__).__name__ == "SerialisedSourceFileLoader"
        assert sys.modules["torch"].cuda.is_available() in (True, False)
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")
