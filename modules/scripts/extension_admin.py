"""What the Extensions tab does, without Gradio: list every source, approve / disable / enable / refresh,
install an extension from a git URL and install an extension's requirements, each with a message for the user.

Consent rules kept here:

* approving shows first what approving means and the requirements it lists (:func:`approve_preview`);
* **installing from git** only clones (``git clone --depth 1``, no hooks, no submodules): the extension
  arrives as "new" and runs nothing until approved. It is allowed only when
  ``ctx.flags.extension_install_allowed`` (not with ``--listen``/``--share``/``--ngrok`` unless
  ``--enable-insecure-extension-access``) **and** the request comes from this machine;
* **installing requirements** (``python -m pip install -r requirements.txt``, in a subprocess with a
  timeout) runs only with the list the user was shown and confirmed (:func:`install_requirements`), under
  the same two conditions.

Every message and path shown goes through ``ctx.paths.scrub``/``shown``: no server path reaches the page.
"""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from modules.app_context import AppContext
    from modules.scripts.sources import Source

#: table columns of :func:`source_rows`
COLUMNS = ("Name", "Kind", "State", "Scripts", "Requirements", "Problem", "Where")
STATE_WORDS = {
    "approved": "approved (running)",
    "new": "new: waits for approval",
    "changed": "changed since approved: waits for approval",
    "disabled": "disabled",
    "off": "off (--disable-extensions)",
}
#: callbacks that run once at start (the page is built, the app's routes made): new ones need a restart
RESTART_EVENTS = {"ui_tabs": "tab", "ui_settings": "settings", "app_started": "API routes"}
GIT_TIMEOUT_S = 120
PIP_TIMEOUT_S = 900
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ALLOWED_SCHEMES = ("https://", "http://", "ssh://", "git://", "file://")


class ExtensionAdminError(ValueError):
    """An action the Extensions tab cannot do (the message says why, for the user)."""


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    output: str = ""          # a subprocess's output (git, pip), paths scrubbed


def _host(ctx: "AppContext"):
    if ctx.scripts is None:
        raise ExtensionAdminError("scripts and extensions are not set up in this studio")
    return ctx.scripts


def kind_label(source: "Source") -> str:
    if source.builtin:
        return "built-in script"
    return "extension" if source.kind == "extension" else "user script"


def source_rows(ctx: "AppContext", *, refresh: bool = True) -> list[list[str]]:
    """One row per source (see :data:`COLUMNS`), built-in scripts first."""
    host = _host(ctx)
    sources = host.sources.discover() if refresh else list(host.sources.sources.values())
    rows = []
    for source in sorted(sources, key=lambda s: (not s.builtin, s.kind, s.name.lower())):
        rows.append([source.name, kind_label(source), STATE_WORDS.get(source.state, source.state),
                     ", ".join(source.scripts) if source.loaded else "",
                     ", ".join(source.requirements), ctx.paths.scrub(source.error or ""),
                     ctx.paths.shown(source.path)])
    return rows


def source_choices(ctx: "AppContext") -> list[tuple[str, str]]:
    """(label, key) per source for a picker: the key (``extension:name``, ``script:file.py``) is unambiguous
    where a script file and an extension share a name."""
    sources = sorted(_host(ctx).sources.sources.values(), key=lambda s: (not s.builtin, s.kind, s.name.lower()))
    return [(f"{s.name} ({kind_label(s)})", s.key) for s in sources]


def problem_lines(ctx: "AppContext", limit: int = 50) -> list[str]:
    """The latest failures of scripts, extensions and callbacks, newest first, paths scrubbed."""
    problems = list(_host(ctx).callbacks.problems)[-limit:]
    return [ctx.paths.scrub(f"{p.owner}: {p.where}: {p.message}") for p in reversed(problems)]


def source_detail(ctx: "AppContext", name: str) -> str:
    """Markdown about one source: state, description, scripts, requirements, its error and trace."""
    source = _get(ctx, name)
    lines = [f"**{source.name}** ({kind_label(source)}) — {STATE_WORDS.get(source.state, source.state)}"]
    if source.description:
        lines.append(source.description)
    if source.loaded:
        lines.append(f"Scripts: {', '.join(source.scripts) or 'none'}")
    if source.requirements:
        lines.append(f"Requirements (requirements.txt): {', '.join(source.requirements)}")
    if source.error:
        trace = ctx.paths.scrub(source.trace or "")
        lines.append(f"Error: {ctx.paths.scrub(source.error)}")
        if trace:
            lines.append("```\n" + trace.strip()[-2000:] + "\n```")
    return "\n\n".join(lines)


def _get(ctx: "AppContext", name: str) -> "Source":
    host = _host(ctx)
    if not (name or "").strip():
        raise ExtensionAdminError("Pick a script or extension in the list first.")
    try:
        return host.sources.get(name.strip())
    except KeyError:
        host.sources.discover()
        try:
            return host.sources.get(name.strip())
        except KeyError:
            raise ExtensionAdminError(f"No script or extension named {name!r}: press Refresh.") from None


def approve_preview(ctx: "AppContext", name: str) -> str:
    """What approving ``name`` means, shown before the user confirms."""
    source = _get(ctx, name)
    if source.builtin:
        return f"{source.name} is a built-in script: it always runs unless disabled."
    what = (f"the Python files in {ctx.paths.shown(source.path / 'scripts')}" if source.kind == "extension"
            else f"the file {ctx.paths.shown(source.path)}")
    text = (f"Approving **{source.name}** runs {what} inside the studio, with the same rights as the studio "
            "itself (your files, your network). Approve only code you trust. The approval covers this exact "
            "content: if the files change, it waits for approval again.")
    if source.requirements:
        text += ("\n\nIt lists these requirements, **not installed by approving** (use \"Install requirements\" "
                 f"after reading them): {', '.join(source.requirements)}")
    return text


def _restart_note(ctx: "AppContext", source: "Source") -> str:
    host = _host(ctx)
    events = [event for event in RESTART_EVENTS
              if any(cb.owner == source.owner for cb in host.callbacks.callbacks(event))]
    notes = []
    if events:
        notes.append("its " + ", ".join(RESTART_EVENTS[e] for e in events))
    if source.scripts:
        notes.append("its scripts' controls in txt2img/img2img (the API can use them now)")
    return f" Restart the studio to see {', '.join(notes)}." if notes else ""


def approve(ctx: "AppContext", name: str) -> Outcome:
    """Approve and load now; says when a restart is needed (tabs, settings, script controls)."""
    source = _get(ctx, name)
    if source.state == "off":
        return Outcome(False, f"{source.name} cannot run: the studio was started with --disable-extensions.")
    _host(ctx).sources.approve(source.key)
    if source.error:
        return Outcome(False, f"{source.name} is approved but failed to load: {ctx.paths.scrub(source.error)}")
    scripts = ", ".join(source.scripts) or "no scripts"
    return Outcome(True, f"Approved {source.name}: loaded ({scripts}).{_restart_note(ctx, source)}")


def disable(ctx: "AppContext", name: str) -> Outcome:
    source = _get(ctx, name)
    had_ui = bool(_restart_note(ctx, source)) if source.loaded else False
    _host(ctx).sources.disable(source.key)
    note = " Its tabs and controls stay on the page until a restart (they no longer run)." if had_ui else ""
    return Outcome(True, f"Disabled {source.name}: its scripts and callbacks were removed.{note}")


def enable(ctx: "AppContext", name: str) -> Outcome:
    source = _host(ctx).sources.enable(_get(ctx, name).key)
    if source.state in ("new", "changed"):
        return Outcome(True, f"Enabled {source.name}; it is {source.state}: approve it to run it.")
    if source.error:
        return Outcome(False, f"Enabled {source.name} but it failed to load: {ctx.paths.scrub(source.error)}")
    return Outcome(True, f"Enabled {source.name}: running.{_restart_note(ctx, source)}")


def refresh(ctx: "AppContext") -> Outcome:
    sources = _host(ctx).sources.discover()
    waiting = [s.name for s in sources if s.state in ("new", "changed")]
    text = f"Found {len(sources)} source(s)."
    if waiting:
        text += f" Waiting for approval: {', '.join(waiting)}."
    return Outcome(True, text)


# --- installing -------------------------------------------------------------------------------------------

def is_local_client(host: str | None) -> bool:
    """Whether a request's client address is this machine (loopback)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def check_install_allowed(ctx: "AppContext", client_host: str | None) -> None:
    """Raise :class:`ExtensionAdminError` unless installing is allowed for this request."""
    if not ctx.flags.extension_install_allowed:
        raise ExtensionAdminError(
            "Installing extensions is off because the studio is reachable from the network (--listen, --share or "
            "--ngrok). Start it with --enable-insecure-extension-access to allow it, or copy the extension into "
            "the extensions folder by hand.")
    if not is_local_client(client_host):
        raise ExtensionAdminError("Installing extensions is only allowed from the computer the studio runs on "
                                  "(open the page at http://127.0.0.1 there).")


def extension_name_from_url(url: str) -> str:
    """The folder name for a git URL: its last path part without ``.git``."""
    tail = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = tail[:-4] if tail.endswith(".git") else tail
    if not _NAME.match(name or ""):
        raise ExtensionAdminError(f"Cannot make a folder name from {url!r}: give the repository's URL, "
                                  "e.g. https://github.com/user/my-extension")
    return name


def install_from_git(ctx: "AppContext", url: str, client_host: str | None, *, name: str = "") -> Outcome:
    """``git clone --depth 1 URL <data dir>/extensions/<name>``: no code runs; it waits for approval."""
    check_install_allowed(ctx, client_host)
    url = (url or "").strip()
    if not url:
        raise ExtensionAdminError("Give the git URL of the extension.")
    if not url.startswith(_ALLOWED_SCHEMES) or any(ch.isspace() for ch in url) or url.startswith("-"):
        raise ExtensionAdminError("The URL must start with https://, http://, ssh://, git:// or file://.")
    name = (name or "").strip() or extension_name_from_url(url)
    if not _NAME.match(name):
        raise ExtensionAdminError(f"{name!r} is not a usable folder name (letters, digits, . _ -).")
    target = ctx.paths.data_dir / "extensions" / name
    if target.exists():
        raise ExtensionAdminError(f"An extension named {name} is already installed ({ctx.paths.shown(target)}).")
    target.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ALLOW_PROTOCOL": "https:http:ssh:git:file",
           "GIT_CONFIG_NOSYSTEM": "1"}
    command = ["git", "-c", "core.hooksPath=/dev/null", "-c", "protocol.file.allow=always", "clone", "--depth", "1",
               "--no-recurse-submodules", "--", url, str(target)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, env=env,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ExtensionAdminError("git is not installed on this computer: install it, then try again.") from None
    except subprocess.TimeoutExpired:
        _remove_tree(target)
        return Outcome(False, f"git clone did not finish within {GIT_TIMEOUT_S} s; nothing was installed.")
    output = ctx.paths.scrub((done.stdout + done.stderr).strip())
    if done.returncode != 0:
        _remove_tree(target)
        return Outcome(False, f"git clone failed (exit {done.returncode}); nothing was installed.", output)
    _host(ctx).sources.discover()
    return Outcome(True, f"Installed {name} into {ctx.paths.shown(target)}. It has not run: read it, then "
                         "approve it in the list.", output)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def requirements_preview(ctx: "AppContext", name: str) -> str:
    source = _get(ctx, name)
    if not source.requirements:
        return f"{source.name} has no requirements.txt: nothing to install."
    return (f"Installing the requirements of **{source.name}** runs `python -m pip install -r requirements.txt` "
            "in the studio's Python environment; pip downloads and may build these packages (running their "
            f"setup code):\n\n" + "\n".join(f"- `{req}`" for req in source.requirements)
            + "\n\nTick \"I read the list\" and press Install requirements to go on.")


def install_requirements(ctx: "AppContext", name: str, confirmed: Sequence[str] | None, client_host: str | None, *,
                         pip_args: Sequence[str] = (), timeout_s: float = PIP_TIMEOUT_S) -> Outcome:
    """Run ``python -m pip install -r requirements.txt`` for ``name`` once the user confirmed exactly the
    list they were shown (``confirmed``); a list changed since is refused. ``pip_args`` are added to the
    command (tests: ``--no-index --target DIR``)."""
    check_install_allowed(ctx, client_host)
    source = _get(ctx, name)
    if source.kind != "extension":
        raise ExtensionAdminError(f"{source.name} is a script file: it has no requirements.txt.")
    source.requirements = _current_requirements(source.path)
    if not source.requirements:
        return Outcome(False, f"{source.name} has no requirements.txt: nothing to install.")
    if confirmed is None:
        raise ExtensionAdminError("Read the list of requirements and confirm it first.")
    if list(confirmed) != list(source.requirements):
        raise ExtensionAdminError("The requirements changed since you read them: read the new list and "
                                  "confirm again.")
    command = [sys.executable, "-m", "pip", "install", "--no-input", "--disable-pip-version-check", "-r",
               "requirements.txt", *pip_args]
    try:
        done = subprocess.run(command, cwd=source.path, capture_output=True, text=True, timeout=timeout_s,
                              stdin=subprocess.DEVNULL, env={**os.environ, "PIP_NO_INPUT": "1"})
    except subprocess.TimeoutExpired as exc:
        text = (exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Outcome(False, f"pip did not finish within {int(timeout_s)} s and was stopped.",
                       ctx.paths.scrub(text)[-8000:])
    output = ctx.paths.scrub((done.stdout + done.stderr).strip())[-8000:]
    if done.returncode != 0:
        return Outcome(False, f"pip failed (exit {done.returncode}): see its output.", output)
    return Outcome(True, f"Installed the requirements of {source.name}. Restart the studio if the extension "
                         "failed to load before.", output)


def _current_requirements(folder: Path) -> list[str]:
    from modules.scripts.sources import _requirements

    return _requirements(folder)
