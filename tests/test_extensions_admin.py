"""The Extensions tab's logic (modules/scripts/extension_admin.py): approve / disable / enable with the
restart notes, install from a (local) git repository without running its code, the localhost and
--listen refusals, installing requirements only after consent (a local wheel, never the network), and the
extension options store (ui_settings) in the settings file."""

from __future__ import annotations

import json
import subprocess
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from modules.flags import Flags, parse_flags
from modules.paths import Paths, resolve_paths
from modules.scripts import extension_admin as admin
from modules.scripts.ext_settings import ExtensionOptionError, ExtensionOptions
from modules.scripts.host import ScriptHost
from modules.settings import SettingsStore

MAIN = textwrap.dedent('''
    from pathlib import Path
    from pydantic import BaseModel, Field
    from modules.scripts.script import Script

    Path(__file__).parents[3].joinpath(Path(__file__).parents[1].name + ".ran").write_text("imported")

    class Args(BaseModel):
        amount: int = Field(2, ge=0, le=9)

    class Shade(Script):
        title = "Shade"
        alwayson = True
        Args = Args

    def setup(api):
        api.on("ui_tabs", lambda tabs: tabs.add("Shade", lambda: None))
        api.on("ui_settings", lambda s: s.add("shade_level", 3, "Shade level", section="Shade"))
''')


@dataclass
class Studio:
    """What extension_admin uses of the app context."""

    flags: Flags
    paths: Paths
    scripts: ScriptHost
    settings: SettingsStore


def _studio(tmp_path: Path, *argv: str) -> Studio:
    data = tmp_path / "data"
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True, exist_ok=True)
    paths = resolve_paths(data)
    host = ScriptHost(repo, data, builtin_digests={})
    host.start()
    return Studio(parse_flags(list(argv)), paths, host, SettingsStore(data / "config.json"))


def _extension(data: Path, name: str, body: str = MAIN, requirements: str | None = None) -> Path:
    folder = data / "extensions" / name
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "main.py").write_text(body)
    if requirements is not None:
        (folder / "requirements.txt").write_text(requirements)
    return folder


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_approve_disable_enable_with_restart_notes(tmp_path: Path) -> None:
    folder = _extension(tmp_path / "data", "shade")
    studio = _studio(tmp_path)
    rows = {row[0]: row for row in admin.source_rows(studio)}
    assert rows["shade"][2].startswith("new") and rows["shade"][1] == "extension"
    assert not (tmp_path / "data" / "shade.ran").exists()
    preview = admin.approve_preview(studio, "shade")
    assert "runs" in preview and "trust" in preview
    assert str(tmp_path) not in preview  # paths shown, not the server's absolute ones

    outcome = admin.approve(studio, "shade")
    assert outcome.ok and "Shade" in outcome.message
    assert "Restart" in outcome.message and "tab" in outcome.message and "settings" in outcome.message
    assert (tmp_path / "data" / "shade.ran").exists() and studio.scripts.registry.get("Shade") is not None
    rows = {row[0]: row for row in admin.source_rows(studio)}
    assert rows["shade"][2].startswith("approved") and rows["shade"][3] == "Shade"

    outcome = admin.disable(studio, "shade")
    assert outcome.ok and "until a restart" in outcome.message
    assert studio.scripts.registry.get("Shade") is None and not studio.scripts.callbacks.callbacks("ui_tabs")
    assert admin.source_rows(studio)[0][2] == "disabled"
    assert admin.enable(studio, "shade").ok and studio.scripts.registry.get("Shade") is not None

    with pytest.raises(admin.ExtensionAdminError, match="No script or extension named 'nope'"):
        admin.approve(studio, "nope")
    with pytest.raises(admin.ExtensionAdminError, match="Pick"):
        admin.disable(studio, "")


def test_broken_extension_is_listed_with_its_error_and_problems_are_scrubbed(tmp_path: Path) -> None:
    _extension(tmp_path / "data", "broken", "raise RuntimeError('cannot start')\n")
    studio = _studio(tmp_path)
    outcome = admin.approve(studio, "broken")
    assert not outcome.ok and "cannot start" in outcome.message
    row = {row[0]: row for row in admin.source_rows(studio)}["broken"]
    assert "RuntimeError: cannot start" in row[5]
    problems = admin.problem_lines(studio)
    assert problems and "extension broken" in problems[0]
    detail = admin.source_detail(studio, "broken")
    assert "cannot start" in detail and str(tmp_path) not in detail


def test_install_from_a_local_git_repository_runs_no_code(tmp_path: Path) -> None:
    source = tmp_path / "src" / "shade-ext"
    (source / "scripts").mkdir(parents=True)
    (source / "scripts" / "main.py").write_text(MAIN)
    _git("init", "-q", cwd=source)
    _git("add", ".", cwd=source)
    _git("commit", "-q", "-m", "first", cwd=source)
    studio = _studio(tmp_path)

    outcome = admin.install_from_git(studio, source.as_uri(), "127.0.0.1")
    assert outcome.ok, outcome.output
    target = tmp_path / "data" / "extensions" / "shade-ext"
    assert (target / "scripts" / "main.py").is_file()
    assert not (tmp_path / "data" / "shade-ext.ran").exists()  # cloned, never imported
    assert studio.scripts.sources.get("shade-ext").state == "new"
    assert "approve" in outcome.message and str(tmp_path) not in outcome.message

    with pytest.raises(admin.ExtensionAdminError, match="already installed"):
        admin.install_from_git(studio, source.as_uri(), "127.0.0.1")
    failed = admin.install_from_git(studio, (tmp_path / "missing.git").as_uri(), "::1", name="other")
    assert not failed.ok and not (tmp_path / "data" / "extensions" / "other").exists()
    with pytest.raises(admin.ExtensionAdminError, match="must start with"):
        admin.install_from_git(studio, "--upload-pack=touch /tmp/x", "127.0.0.1")
    with pytest.raises(admin.ExtensionAdminError, match="must start with"):
        admin.install_from_git(studio, "ext::sh -c touch% /tmp/pwned", "127.0.0.1")


@pytest.mark.parametrize("argv,client,why", [
    ((), "192.168.1.20", "only allowed from the computer"),
    ((), None, "only allowed from the computer"),
    (("--listen", "--insecure"), "127.0.0.1", "reachable from the network"),
    (("--share", "--insecure"), "127.0.0.1", "--enable-insecure-extension-access"),
])
def test_install_is_refused_from_afar_and_when_public(tmp_path: Path, argv: tuple[str, ...], client: str | None,
                                                      why: str) -> None:
    studio = _studio(tmp_path, *argv)
    with pytest.raises(admin.ExtensionAdminError, match=why):
        admin.install_from_git(studio, "file:///nowhere/ext.git", client)
    assert not (tmp_path / "data" / "extensions").exists()


def test_public_studio_with_the_opt_in_flag_installs_from_localhost_only(tmp_path: Path) -> None:
    studio = _studio(tmp_path, "--listen", "--insecure", "--enable-insecure-extension-access")
    admin.check_install_allowed(studio, "127.0.0.1")
    with pytest.raises(admin.ExtensionAdminError, match="only allowed from the computer"):
        admin.check_install_allowed(studio, "10.0.0.7")


def _wheel(folder: Path) -> Path:
    path = folder / "atelier_tinypkg-0.1-py3-none-any.whl"
    files = {
        "atelier_tinypkg/__init__.py": "VALUE = 42\n",
        "atelier_tinypkg-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: atelier-tinypkg\nVersion: 0.1\n",
        "atelier_tinypkg-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                               "Tag: py3-none-any\n",
    }
    with zipfile.ZipFile(path, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
        archive.writestr("atelier_tinypkg-0.1.dist-info/RECORD",
                         "".join(f"{name},,\n" for name in files) + "atelier_tinypkg-0.1.dist-info/RECORD,,\n")
    return path


def test_requirements_install_only_after_consent_from_a_local_wheel(tmp_path: Path) -> None:
    folder = _extension(tmp_path / "data", "needs", requirements="# a local wheel\n./atelier_tinypkg-0.1-py3-none-any.whl\n")
    _wheel(folder)
    studio = _studio(tmp_path)
    wanted = ["./atelier_tinypkg-0.1-py3-none-any.whl"]
    assert "atelier_tinypkg" in admin.requirements_preview(studio, "needs")
    assert "not installed by approving" in admin.approve_preview(studio, "needs")
    target = tmp_path / "site"
    local = ("--no-index", "--target", str(target))

    with pytest.raises(admin.ExtensionAdminError, match="confirm"):
        admin.install_requirements(studio, "needs", None, "127.0.0.1", pip_args=local)
    with pytest.raises(admin.ExtensionAdminError, match="changed since you read them"):
        admin.install_requirements(studio, "needs", ["something-else"], "127.0.0.1", pip_args=local)
    with pytest.raises(admin.ExtensionAdminError, match="only allowed from the computer"):
        admin.install_requirements(studio, "needs", wanted, "203.0.113.9", pip_args=local)
    assert not target.exists()

    outcome = admin.install_requirements(studio, "needs", wanted, "127.0.0.1", pip_args=local)
    assert outcome.ok, outcome.output
    assert (target / "atelier_tinypkg" / "__init__.py").read_text() == "VALUE = 42\n"
    assert "atelier-tinypkg" in outcome.output.lower() or "atelier_tinypkg" in outcome.output

    (folder / "requirements.txt").write_text("./missing-0.1-py3-none-any.whl\n")
    studio.scripts.sources.discover()
    failed = admin.install_requirements(studio, "needs", ["./missing-0.1-py3-none-any.whl"], "127.0.0.1",
                                        pip_args=local)
    assert not failed.ok and "pip failed" in failed.message and str(tmp_path) not in failed.output


def test_extension_options_are_declared_stored_and_checked(tmp_path: Path) -> None:
    _extension(tmp_path / "data", "shade")
    studio = _studio(tmp_path)
    options = ExtensionOptions(studio.settings, studio.scripts.callbacks)
    assert options.values() == {}  # not approved: nothing declared
    admin.approve(studio, "shade")
    assert options.values() == {"shade_level": 3}
    assert options.update({"shade_level": 5.0}) == {"shade_level": 5}
    with pytest.raises(ExtensionOptionError, match="takes a int"):
        options.update({"shade_level": "high"})
    with pytest.raises(ExtensionOptionError, match="unknown extension option"):
        options.update({"nope": 1})
    mine, rest = options.split({"shade_level": 7, "send_seed": False})
    assert mine == {"shade_level": 7} and rest == {"send_seed": False}
    # kept in the settings file beside the studio's settings, and across a settings change
    studio.settings.update({"send_seed": False})
    saved = json.loads((tmp_path / "data" / "config.json").read_text())
    assert saved["shade_level"] == 5 and saved["send_seed"] is False
    again = SettingsStore(tmp_path / "data" / "config.json")
    assert ExtensionOptions(again, studio.scripts.callbacks).get("shade_level") == 5


def test_a_script_file_and_an_extension_of_the_same_name_are_told_apart(tmp_path: Path) -> None:
    _extension(tmp_path / "data", "shade")
    (tmp_path / "data" / "scripts").mkdir(parents=True)
    (tmp_path / "data" / "scripts" / "shade.py").write_text("raise RuntimeError('the script file ran')\n")
    studio = _studio(tmp_path)
    choices = dict(admin.source_choices(studio))
    assert choices["shade (extension)"] == "extension:shade" and choices["shade.py (user script)"] == "script:shade.py"
    assert admin.approve(studio, "extension:shade").ok
    assert studio.scripts.sources.get("script:shade.py").state == "new"
    assert studio.scripts.registry.get("Shade") is not None
    assert admin.disable(studio, "extension:shade").ok and studio.scripts.sources.get("extension:shade").state == "disabled"
    assert admin.enable(studio, "extension:shade").ok and studio.scripts.registry.get("Shade") is not None
