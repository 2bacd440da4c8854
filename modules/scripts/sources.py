"""Where scripts come from, whether the user approved them, and loading approved code with every fault isolated.

Sources:

* the **built-in scripts**: ``scripts/*.py`` of the install whose content is the shipped one
  (:data:`BUILTIN_DIGESTS`); edited, they count as changed and wait for approval like any other code;
* **user scripts**: any other ``scripts/*.py`` (of the install, and of the data dir when it differs);
* **extensions**: one folder each under ``extensions/`` (the install's and the data dir's), whose
  ``scripts/*.py`` are loaded.

**Consent.** No code of a source runs until it is approved: at start every source is listed with the
SHA-256 of its content (for a folder, of every file in it but ``.git``); one that is new, or whose
content changed since it was approved, is not imported until the user approves it in the Extensions tab
(or starts with ``--enable-extension NAME``). Approvals are kept in ``<data dir>/extensions.json``.

**Loading.** An approved file is imported under its own module name (``atelier_ext.<source>.<file>``);
every :class:`~modules.scripts.script.Script` subclass defined in it is registered, and a module-level
``setup(api)`` function is called with an :class:`ExtensionApi` (callbacks, scripts, job kinds). A
syntax error, a failing import or a failing ``setup`` marks the source broken (reported in the Extensions
tab and the log); the other sources load on.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from modules.scripts.script import Script

if TYPE_CHECKING:
    from modules.jobs.kinds import JobKind
    from modules.scripts.callbacks import CallbackRegistry
    from modules.scripts.registry import ScriptRegistry

log = logging.getLogger(__name__)

#: the built-in scripts as shipped (file name -> SHA-256 of its bytes); ``python -m modules.scripts.sources``
#: prints the current values after an edit (a test checks they match the files)
BUILTIN_DIGESTS: dict[str, str] = {
    "loopback.py": "7cbddf76d130838f5b66b645767915c6edb49566c0c21b8474d0ffaeabfbbf53",
    "prompt_matrix.py": "1941ed421ddf5a638978a8729986b4467b95dccb8409dfda5b1e3b7e5065c05a",
    "prompts_from_file.py": "a503ce1e799a88b4cedf8bbb1ce0ec4a4abc763d7c70ee8a8f66208b12bf004f",
    "xyz_grid.py": "2d507772db6ef3d8d37bd93ef3eeba5607e929248436163f18a0516b07d2c650",
}

APPROVALS_FILE = "extensions.json"
MODULE_PREFIX = "atelier_ext"


@dataclass
class Source:
    """One script file or extension folder the studio found."""

    kind: str                 # "script" or "extension"
    name: str                 # file name (scripts) or folder name (extensions)
    path: Path
    digest: str
    builtin: bool = False
    state: str = "new"        # "approved", "new", "changed", "disabled", "off" (--disable-extensions)
    loaded: bool = False
    error: str | None = None
    trace: str = ""
    scripts: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.name}"

    @property
    def owner(self) -> str:
        """The name callbacks and scripts of this source are registered under."""
        return "built-in" if self.builtin else (f"extension {self.name}" if self.kind == "extension"
                                                 else f"script {self.name}")

    @property
    def runs(self) -> bool:
        return self.state == "approved"


def file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_digest(folder: Path) -> str:
    """SHA-256 over every file of ``folder`` (relative path and bytes), ``.git`` and caches left out."""
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part in (".git", "__pycache__") for part in rel.parts) or not path.is_file():
            continue
        digest.update(rel.as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _requirements(folder: Path) -> list[str]:
    req = folder / "requirements.txt"
    if not req.is_file():
        return []
    lines = [line.split("#", 1)[0].strip() for line in req.read_text(encoding="utf-8", errors="replace").splitlines()]
    return [line for line in lines if line]


def _description(folder: Path) -> str:
    for name in ("metadata.ini", "README.md"):
        path = folder / name
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                line = line.strip().lstrip("#").strip()
                if line and not line.startswith("[") and not line.lower().startswith("name"):
                    return line.split("=", 1)[-1].strip()[:200] if line.lower().startswith("description") else line[:200]
    return ""


class Approvals:
    """``<data dir>/extensions.json``: approved content digests and disabled sources, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.approved: dict[str, str] = {}
        self.disabled: set[str] = set()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self.approved = {str(k): str(v) for k, v in dict(data.get("approved", {})).items()}
            self.disabled = {str(k) for k in data.get("disabled", [])}
        except FileNotFoundError:
            pass
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("%s is unreadable (%s): every extension waits for approval again", path.name, exc)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"approved": self.approved, "disabled": sorted(self.disabled)}, indent=2),
                       encoding="utf-8")
        os.replace(tmp, self.path)

    def approve(self, key: str, digest: str) -> None:
        with self._lock:
            self.approved[key] = digest
            self.disabled.discard(key)
            self._save()

    def set_disabled(self, key: str, disabled: bool) -> None:
        with self._lock:
            (self.disabled.add if disabled else self.disabled.discard)(key)
            self._save()

    def forget(self, key: str) -> None:
        with self._lock:
            self.approved.pop(key, None)
            self.disabled.discard(key)
            self._save()


class ExtensionApi:
    """What a script file's ``setup(api)`` gets: registration bound to its source (no global state)."""

    def __init__(self, source: Source, callbacks: "CallbackRegistry", registry: "ScriptRegistry",
                 add_kind: Callable[["JobKind"], None] | None, data_dir: Path) -> None:
        self.source = source
        self._callbacks = callbacks
        self._registry = registry
        self._add_kind = add_kind
        #: the extension's own folder (or the scripts folder), like A1111's ``scripts.basedir()``
        self.basedir = source.path if source.kind == "extension" else source.path.parent
        #: a folder of the data dir this source may write to
        self.data_dir = data_dir / "extensions-data" / source.name.removesuffix(".py")

    def on(self, event: str, fn: Callable[[Any], Any], priority: int = 100) -> Callable[[Any], Any]:
        return self._callbacks.on(event, fn, owner=self.source.owner, priority=priority)

    def register_script(self, script: type[Script] | Script) -> None:
        instance = script() if isinstance(script, type) else script
        self._registry.register(instance, self.source.owner)
        self.source.scripts.append(instance.title)

    def register_job_kind(self, kind: "JobKind") -> None:
        if self._add_kind is None:
            raise RuntimeError("job kinds cannot be added here")
        self._add_kind(kind)


class ScriptSources:
    """Finds, approves, enables/disables and loads the studio's script files and extensions."""

    def __init__(self, repo_root: Path, data_dir: Path, callbacks: "CallbackRegistry",
                 registry: "ScriptRegistry", *, enable: tuple[str, ...] = (),
                 add_kind: Callable[["JobKind"], None] | None = None,
                 builtin_digests: dict[str, str] | None = None, user_code: bool = True) -> None:
        self.repo_root = repo_root
        self.user_code = user_code  # False (--disable-extensions): only the built-in scripts run
        self.data_dir = data_dir
        self.callbacks = callbacks
        self.registry = registry
        self.add_kind = add_kind
        self.builtin_digests = BUILTIN_DIGESTS if builtin_digests is None else builtin_digests
        self.approvals = Approvals(data_dir / APPROVALS_FILE)
        self.enable_names = tuple(enable)
        self._lock = threading.RLock()
        self.sources: dict[str, Source] = {}

    # --- discovery -----------------------------------------------------------------------------------

    @property
    def script_dirs(self) -> list[Path]:
        return list(dict.fromkeys([self.repo_root / "scripts", self.data_dir / "scripts"]))

    @property
    def extension_dirs(self) -> list[Path]:
        return list(dict.fromkeys([self.repo_root / "extensions", self.data_dir / "extensions"]))

    def discover(self) -> list[Source]:
        """List every source and its state (runs no code)."""
        found: dict[str, Source] = {}
        for folder in self.script_dirs:
            for path in sorted(folder.glob("*.py")) if folder.is_dir() else ():
                if path.name.startswith("_"):
                    continue
                digest = file_digest(path)
                builtin = folder == self.repo_root / "scripts" and self.builtin_digests.get(path.name) == digest
                found.setdefault(f"script:{path.name}", Source("script", path.name, path, digest, builtin=builtin))
        for folder in self.extension_dirs:
            for path in sorted(folder.iterdir()) if folder.is_dir() else ():
                if not path.is_dir() or path.name.startswith((".", "_")):
                    continue
                source = Source("extension", path.name, path, folder_digest(path),
                                requirements=_requirements(path), description=_description(path))
                found.setdefault(source.key, source)
        with self._lock:
            for key, source in found.items():
                old = self.sources.get(key)
                source.state = self._state(source)
                if old is not None and old.digest == source.digest:
                    source.loaded, source.error, source.trace, source.scripts = (old.loaded, old.error, old.trace,
                                                                                 old.scripts)
            self.sources = found
            return list(found.values())

    def _state(self, source: Source) -> str:
        if source.key in self.approvals.disabled:
            return "disabled"
        if source.builtin:
            return "approved"
        if not self.user_code:
            return "off"
        if source.name in self.enable_names or source.name.removesuffix(".py") in self.enable_names:
            if self.approvals.approved.get(source.key) != source.digest:
                self.approvals.approve(source.key, source.digest)
            return "approved"
        approved = self.approvals.approved.get(source.key)
        return "approved" if approved == source.digest else ("changed" if approved else "new")

    def get(self, name: str) -> Source:
        with self._lock:
            for source in self.sources.values():
                if name in (source.key, source.name, source.name.removesuffix(".py")):
                    return source
        raise KeyError(f"no script or extension named {name!r}")

    # --- loading ---------------------------------------------------------------------------------------

    def load_all(self) -> None:
        """Load every approved source not loaded yet (start-up)."""
        for source in self.discover():
            if source.runs and not source.loaded:
                self.load(source)

    def load(self, source: Source) -> bool:
        """Import an approved source's files; False (and ``source.error``) when it failed."""
        if not source.runs:
            raise PermissionError(f"{source.name} is not approved: approve it in the Extensions tab first")
        files = [source.path] if source.kind == "script" else sorted((source.path / "scripts").glob("*.py"))
        source.scripts = []
        source.error, source.trace = None, ""
        for path in files:
            try:
                self._import(source, path)
            except Exception as exc:  # noqa: BLE001 - a broken extension is reported, the studio goes on
                self._unregister(source)
                source.error = f"{path.name}: {type(exc).__name__}: {exc}"
                source.trace = traceback.format_exc()[-4000:]
                self.callbacks.report(source.owner, f"loading {path.name}", exc)
                source.loaded = False
                return False
        source.loaded = True
        log.info("loaded %s (%s)", source.owner, ", ".join(source.scripts) or "no scripts")
        return True

    def _import(self, source: Source, path: Path) -> None:
        module_name = f"{MODULE_PREFIX}.{_identifier(source.kind + '_' + source.name)}.{_identifier(path.stem)}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path.name}")
        module = importlib.util.module_from_spec(spec)
        base = str(source.path if source.kind == "extension" else path.parent)
        added = base not in sys.path
        if added:
            sys.path.insert(0, base)  # as A1111: the extension's own modules import by plain name
        sys.modules[module_name] = module  # pydantic and dataclasses resolve annotations through it
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        finally:
            if added:
                try:
                    sys.path.remove(base)
                except ValueError:
                    pass
        api = ExtensionApi(source, self.callbacks, self.registry, self.add_kind, self.data_dir)
        for value in list(vars(module).values()):
            if (isinstance(value, type) and issubclass(value, Script) and value is not Script
                    and value.__module__ == module_name and value.title):
                api.register_script(value)
        setup = getattr(module, "setup", None)
        if callable(setup):
            setup(api)

    def _unregister(self, source: Source) -> None:
        self.registry.remove_owner(source.owner)
        self.callbacks.remove_owner(source.owner)
        source.scripts = []

    # --- the user's choices ----------------------------------------------------------------------------

    def approve(self, name: str) -> Source:
        """Approve ``name``'s current content and load it now."""
        source = self.get(name)
        self.approvals.approve(source.key, source.digest)
        source.state = "approved"
        if not source.loaded:
            self.load(source)
        return source

    def disable(self, name: str) -> Source:
        """Stop running ``name``: its scripts and callbacks are removed now (tabs it added stay until a restart)."""
        source = self.get(name)
        self.approvals.set_disabled(source.key, True)
        self._unregister(source)
        source.state, source.loaded = "disabled", False
        return source

    def enable(self, name: str) -> Source:
        """Undo :meth:`disable` (runs it again only when its content is still the approved one)."""
        source = self.get(name)
        self.approvals.set_disabled(source.key, False)
        source.state = self._state(source)
        if source.runs and not source.loaded:
            self.load(source)
        return source


def _identifier(text: str) -> str:
    out = "".join(ch if ch.isalnum() else "_" for ch in text)
    return out if out and not out[0].isdigit() else "_" + out


if __name__ == "__main__":  # print the built-in digests to paste into BUILTIN_DIGESTS
    root = Path(__file__).resolve().parents[2] / "scripts"
    for script in sorted(root.glob("*.py")):
        print(f'    "{script.name}": "{file_digest(script)}",')
