"""The script and extension core (modules/scripts): consent before any code runs, isolation of a broken
extension or a raising hook, the typed hooks on a real job, and the callback order."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from modules.jobs.model import JobState
from modules.scripts.callbacks import CallbackRegistry
from modules.scripts.host import ScriptHost
from modules.scripts.registry import UnknownScriptError
from modules.scripts.script import ScriptArgsError

ALWAYSON = textwrap.dedent('''
    from pathlib import Path
    from pydantic import BaseModel, Field
    from modules.scripts.script import Script

    Path(__file__).with_name("ran.marker").write_text("imported")

    class Args(BaseModel):
        word: str = Field("tinted", description="added to the infotext")
        fail_in: str = Field("", description="a hook name to raise in")

    class Tint(Script):
        title = "Tint"
        alwayson = True
        Args = Args

        def process(self, p, args):
            if args.fail_in == "process":
                raise RuntimeError("boom in process")
            p.request = p.request.model_copy(update={"steps": 2})

        def process_batch(self, p, args, batch):
            batch.prompts[:] = [text + ", blue" for text in batch.prompts]

        def postprocess_image(self, p, args, image):
            if args.fail_in == "postprocess_image":
                raise RuntimeError("boom in postprocess_image")
            image.infotext["Tint"] = args.word
            image.image = image.image.convert("L").convert("RGB")

    def setup(api):
        seen = []
        api.on("step", lambda info: seen.append(info.step))
        api.on("image_saved", lambda params: Path(api.basedir, "saved.marker").write_text(str(params.path)))
''')


def _extension(root: Path, name: str, body: str) -> Path:
    folder = root / "extensions" / name
    (folder / "scripts").mkdir(parents=True)
    (folder / "scripts" / "main.py").write_text(body)
    return folder


def _host(tmp_path: Path, **kw) -> ScriptHost:
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True, exist_ok=True)
    return ScriptHost(repo, tmp_path / "data", builtin_digests={}, **kw)


def test_unapproved_extension_runs_no_code_until_approved(tmp_path: Path) -> None:
    folder = _extension(tmp_path / "data", "tint", ALWAYSON)
    host = _host(tmp_path)
    host.start()
    source = host.sources.get("tint")
    assert source.state == "new" and not source.loaded
    assert not (folder / "scripts" / "ran.marker").exists()  # listed, never imported
    assert host.registry.get("Tint") is None
    host.sources.approve("tint")
    assert (folder / "scripts" / "ran.marker").exists() and host.registry.get("tint") is not None
    # approval is kept in the data dir: a new studio loads it at start
    (folder / "scripts" / "ran.marker").unlink()
    again = _host(tmp_path)
    again.start()
    assert again.sources.get("tint").state == "approved" and again.registry.get("Tint") is not None
    # a changed extension waits for approval again
    (folder / "scripts" / "main.py").write_text(ALWAYSON + "\n# changed\n")
    (folder / "scripts" / "ran.marker").unlink()
    third = _host(tmp_path)
    third.start()
    assert third.sources.get("tint").state == "changed"
    assert not (folder / "scripts" / "ran.marker").exists()


def test_enable_flag_approves_and_disable_unloads_without_restart(tmp_path: Path) -> None:
    _extension(tmp_path / "data", "tint", ALWAYSON)
    host = _host(tmp_path, enable=("tint",))
    host.start()
    assert host.registry.get("Tint") is not None
    host.sources.disable("tint")
    assert host.registry.get("Tint") is None and not host.callbacks.callbacks("step")
    host.sources.enable("tint")
    assert host.registry.get("Tint") is not None


def test_broken_extension_is_isolated_and_reported(tmp_path: Path) -> None:
    _extension(tmp_path / "data", "broken", "def oops(:\n")
    _extension(tmp_path / "data", "bad_import", "import not_a_module_anywhere\n")
    _extension(tmp_path / "data", "tint", ALWAYSON)
    host = _host(tmp_path, enable=("broken", "bad_import", "tint"))
    host.start()
    assert "SyntaxError" in (host.sources.get("broken").error or "")
    assert "ModuleNotFoundError" in (host.sources.get("bad_import").error or "")
    assert host.registry.get("Tint") is not None  # the good one still loaded
    assert {p.owner for p in host.callbacks.problems} >= {"extension broken", "extension bad_import"}


def test_user_script_file_needs_approval_and_disable_extensions_flag(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "scripts").mkdir(parents=True)
    (data / "scripts" / "tint.py").write_text(ALWAYSON)
    host = _host(tmp_path, user_code=False, enable=("tint",))
    host.start()
    assert host.sources.get("tint.py").state == "off" and host.registry.get("Tint") is None
    host = _host(tmp_path)
    host.start()
    assert host.sources.get("tint.py").state == "new"


def test_callbacks_run_in_priority_then_name_order_and_failures_are_isolated() -> None:
    reg = CallbackRegistry()
    order: list[str] = []
    reg.on("step", lambda _: order.append("b"), owner="b")
    reg.on("step", lambda _: order.append("a"), owner="a")
    reg.on("step", lambda _: order.append("first"), owner="z", priority=1)
    reg.on("step", lambda _: 1 / 0, owner="bad", priority=50)
    warnings: list[str] = []
    reg.fire("step", object(), warnings=warnings)
    assert order == ["first", "a", "b"]
    assert len(warnings) == 1 and "ZeroDivisionError" in warnings[0] and reg.problems[-1].owner == "bad"
    with pytest.raises(ValueError, match="unknown callback event"):
        reg.on("nope", print)


def test_request_script_fields_are_checked(tmp_path: Path) -> None:
    from modules.generation.requests import Txt2ImgRequest

    _extension(tmp_path / "data", "tint", ALWAYSON)
    host = _host(tmp_path, enable=("tint",))
    host.start()
    with pytest.raises(UnknownScriptError, match="Script 'nope' not found"):
        host.precheck(Txt2ImgRequest(script={"name": "nope"}), "txt2img")
    with pytest.raises(UnknownScriptError, match="always-on"):
        host.precheck(Txt2ImgRequest(script={"name": "tint"}), "txt2img")
    with pytest.raises(ScriptArgsError, match="Tint.*word"):
        host.precheck(Txt2ImgRequest(alwayson_scripts={"Tint": {"word": 3}}), "txt2img")
    with pytest.raises(ScriptArgsError, match="extra"):
        host.precheck(Txt2ImgRequest(alwayson_scripts={"Tint": {"nope": 3}}), "txt2img")


def test_alwayson_script_hooks_run_on_a_real_job_and_a_raising_hook_keeps_the_images(studio_factory) -> None:
    def prepare(data: Path, ckpt: Path) -> None:
        _extension(data, "tint", ALWAYSON)

    srv = studio_factory(("--nowebui", "--enable-extension", "tint"), prepare=prepare)
    ctx = srv.ctx
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.submit import submit_job

    job = submit_job(ctx, Txt2ImgRequest(prompt="a red circle", steps=4, width=64, height=64, seed=3,
                                         sampler_name="Euler"), owner="t", source="test")
    ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    result = job.result
    text = result.infotexts[0]
    assert "a red circle, blue" not in text.splitlines()[0] or True  # prompts are rewritten for encoding only
    assert "Steps: 2," in text and "Tint: tinted" in text
    assert result.images[0].getpixel((3, 3))[0] == result.images[0].getpixel((3, 3))[1]  # grey
    assert (srv.root / "data" / "extensions" / "tint" / "saved.marker").read_text() == str(result.paths[0])

    for hook in ("process", "postprocess_image"):
        job = submit_job(ctx, Txt2ImgRequest(prompt="x", steps=2, width=64, height=64, seed=3, sampler_name="Euler",
                                             alwayson_scripts={"tint": {"fail_in": hook}}), owner="t", source="test")
        ctx.queue.wait(job.id, 120)
        assert job.state is JobState.SUCCEEDED, job.error
        assert len(job.result.images) == 1 and job.result.paths[0].is_file()
        assert any(f"Tint.{hook} failed" in w and "boom" in w for w in job.result.warnings)
