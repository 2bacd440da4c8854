"""docs/extensions.md cannot rot: its ``# file: ...`` code blocks are written into a temporary extension,
which is listed as new (nothing runs), approved, then its script changes a real job's images, its callback
counts them and its route answers through a real studio (restarted on the same approvals)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import httpx

from modules.jobs.model import JobState

DOC = Path(__file__).resolve().parents[1] / "docs" / "extensions.md"
FENCE = re.compile(r"^```[a-z]*\n(# file: (?P<path>\S+)\n)(?P<body>.*?)^```", re.M | re.S)


def tutorial_files() -> dict[str, str]:
    """path -> content: the blocks of one file joined in the order the tutorial gives them."""
    files: dict[str, str] = {}
    for match in FENCE.finditer(DOC.read_text(encoding="utf-8")):
        path = match.group("path")
        files[path] = files.get(path, "") + match.group("body")
    return files


def _write(folder: Path) -> None:
    for path, text in tutorial_files().items():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def test_the_tutorial_has_its_files() -> None:
    files = tutorial_files()
    assert set(files) == {"metadata.ini", "scripts/hello.py"}
    assert "class Desaturate(Script)" in files["scripts/hello.py"] and "def setup(api)" in files["scripts/hello.py"]


def _generate(ctx, **extra):
    from modules.generation.requests import Txt2ImgRequest
    from modules.jobs.submit import submit_job

    job = submit_job(ctx, Txt2ImgRequest(prompt="a red circle", steps=2, width=64, height=64, seed=9,
                                         sampler_name="Euler", **extra), owner="t", source="test")
    ctx.queue.wait(job.id, 120)
    assert job.state is JobState.SUCCEEDED, job.error
    return job.result


def test_the_tutorial_extension_works_in_a_real_studio(studio_factory) -> None:
    from modules.scripts import extension_admin as admin

    srv = studio_factory(("--api", "--nowebui"), prepare=lambda data, ckpt: _write(data / "extensions" / "hello"),
                         name="tutorial")
    ctx = srv.ctx
    source = ctx.scripts.sources.get("hello")
    assert source.state == "new" and ctx.scripts.registry.get("Desaturate") is None
    assert "desaturates images" in source.description

    outcome = admin.approve(ctx, "hello")  # what the Extensions tab's Approve does
    assert outcome.ok and "Desaturate" in outcome.message and "API routes" in outcome.message

    result = _generate(ctx, alwayson_scripts={"Desaturate": {"amount": 1.0}})
    red, green, blue = result.images[0].convert("RGB").getpixel((20, 20))
    assert abs(red - green) <= 2 and abs(green - blue) <= 2  # grey
    assert "Desaturate: 1.0" in result.infotexts[0]
    script = ctx.scripts.registry.get("desaturate")
    from modules.images.infotext import parse_infotext

    assert script.args_from_infotext(parse_infotext(result.infotexts[0])) == {"amount": 1.0}
    plain = _generate(ctx)  # amount 0 (the default): colours kept
    assert "Desaturate" not in plain.infotexts[0]

    # the route comes with the next start: a studio on the same approvals (extensions.json)
    def again(data: Path, ckpt: Path) -> None:
        _write(data / "extensions" / "hello")
        shutil.copyfile(srv.root / "data" / "extensions.json", data / "extensions.json")

    second = studio_factory(("--api", "--nowebui"), prepare=again, name="tutorial-again")
    assert second.ctx.scripts.sources.get("hello").state == "approved"
    with second.client() as http:
        assert http.get("/hello/saved").json() == {"saved": 0}
        _generate(second.ctx)
        assert http.get("/hello/saved").json() == {"saved": 1}  # the image_saved callback counted it
        assert http.get("/hello/nope").status_code == 404
    assert httpx.get(srv.base_url + "/hello/saved").status_code == 404  # not before the restart
