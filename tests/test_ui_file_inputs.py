"""No server file leaves through the web UI (issue 33.1).

Every Gradio event whose inputs take a file is found in the running app's own ``/config`` (so tabs
added later are covered without editing this test) and called with ``FileData`` values naming a
secret file outside the data dir: a picture whose infotext carries a secret token, and a text file.
No answer may carry the secret, no file the answers point to may be the secret, the secret must not
be copied into Gradio's cache, and ``/gradio_api/file=`` must not serve it. Also: Gradio's cache is
in the data dir and emptied at start; error messages name no absolute server path; History ignores
symlinks that lead out of the outputs folder.
"""

from __future__ import annotations

import json
import secrets
import uuid
from pathlib import Path
from typing import Any, Iterator

import httpx
import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from tests.helpers.server import RunningServer

pytestmark = pytest.mark.slow

TOKEN = "SECRET-" + secrets.token_hex(8)


def _file_data(path: str) -> dict[str, Any]:
    return {"path": path, "meta": {"_type": "gradio.FileData"}, "orig_name": Path(path).name}


def _instance(schema: dict[str, Any], defs: dict[str, Any], path: str, depth: int = 0) -> Any:
    """A value of a component's API schema in which every file object names ``path``."""
    if depth > 12:
        return None
    if "$ref" in schema:
        return _instance(defs[schema["$ref"].split("/")[-1]], defs, path, depth + 1)
    if "anyOf" in schema or "oneOf" in schema:
        options = [o for o in schema.get("anyOf", schema.get("oneOf", [])) if o.get("type") != "null"]
        with_files = [o for o in options if '"path"' in json.dumps(o) or "$ref" in o]
        return _instance((with_files or options or [{}])[0], defs, path, depth + 1)
    properties = schema.get("properties", {})
    if "path" in properties:
        return _file_data(path)
    if schema.get("type") == "array" or "items" in schema:
        return [_instance(schema.get("items", {}), defs, path, depth + 1)]
    if properties:
        return {name: _instance(sub, defs, path, depth + 1) for name, sub in properties.items()}
    return schema.get("default")


def _takes_file(component: dict[str, Any]) -> bool:
    return '"path"' in json.dumps(component.get("api_info") or {})


def _secret_files(root: Path) -> tuple[Path, Path, np.ndarray]:
    folder = root / "elsewhere"
    folder.mkdir()
    pixels = np.random.default_rng(7).integers(0, 256, (48, 40, 3), dtype=np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", f"{TOKEN}\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 40x48")
    picture = folder / "private-picture.png"
    Image.fromarray(pixels).save(picture, pnginfo=info)
    text = folder / "private-notes.txt"
    text.write_text(f"password = {TOKEN}\n")
    return picture, text, pixels


def _is_secret_picture(data: bytes, pixels: np.ndarray) -> bool:
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            got = np.asarray(image.convert("RGB"))
    except Exception:  # noqa: BLE001 - not a picture
        return False
    return got.shape == pixels.shape and int(np.abs(got.astype(int) - pixels.astype(int)).max()) <= 8


def _call(http: httpx.Client, dep: dict[str, Any], data: list[Any]) -> str:
    """Run one event through Gradio's queue as the page does; everything the server sent, as text."""
    session = uuid.uuid4().hex[:10]
    body = {"data": data, "fn_index": dep["id"], "session_hash": session, "event_data": None,
            "trigger_id": (dep["targets"][0][0] if dep["targets"] else None)}
    joined = http.post("/gradio_api/queue/join", json=body)
    text = joined.text
    if joined.status_code != 200:
        return text
    with http.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            text += line + "\n"
            if '"process_completed"' in line or '"close_stream"' in line:
                break
    return text


def _pointed_files(text: str) -> Iterator[str]:
    """Every ``path`` and ``/gradio_api/file=`` an answer names."""
    for line in text.splitlines():
        payload = line.removeprefix("data: ")
        try:
            value = json.loads(payload)
        except ValueError:
            continue
        stack = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, dict):
                for key in ("path", "url"):
                    if isinstance(item.get(key), str):
                        yield item[key]
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)


@pytest.fixture(scope="module")
def studio(studio_factory) -> tuple[RunningServer, Path]:
    def leave_stale_cache(data: Path, ckpt_dir: Path) -> None:
        stale = data / "cache" / "gradio" / "old-run"
        stale.mkdir(parents=True)
        (stale / "left-over.txt").write_text("from an earlier run")

    server = studio_factory(["--api"], models=(), name="file-inputs", prepare=leave_stale_cache)
    return server, server.root


def test_gradio_cache_is_in_the_data_dir_and_emptied_at_start(studio: tuple[RunningServer, Path]) -> None:
    server, root = studio
    cache = server.ctx.paths.gradio_cache_dir
    assert cache == (root / "data" / "cache" / "gradio").resolve()
    assert cache.is_dir() and not (cache / "old-run").exists()
    with server.client() as http:  # an upload lands there
        r = http.post("/gradio_api/upload", files={"files": ("a.png", b"\x89PNG\r\n", "image/png")})
        assert r.status_code == 200, r.text
        assert Path(r.json()[0]).resolve().is_relative_to(cache)


def test_no_file_event_reads_a_server_file(studio: tuple[RunningServer, Path]) -> None:
    server, root = studio
    picture, text_file, pixels = _secret_files(root)
    with server.client() as http:
        config = http.get("/config").json()
        components = {c["id"]: c for c in config["components"]}
        events = [d for d in config["dependencies"] if d["backend_fn"]
                  and any(_takes_file(components[i]) for i in d["inputs"])]
        assert len(events) >= 20, "the app's file events were not found"  # 23 when written
        answers: list[str] = []
        for dep in events:
            for secret in (picture, text_file):
                data = []
                for i in dep["inputs"]:
                    component = components[i]
                    if _takes_file(component):
                        api = component["api_info"]
                        data.append(_instance(api, api.get("$defs", {}), str(secret)))
                    else:
                        data.append(component.get("props", {}).get("value"))
                answer = _call(http, dep, data)
                answers.append(answer)
                assert TOKEN not in answer, f"event {dep['api_name']} answered with the secret"
                assert str(secret.parent) not in answer, f"event {dep['api_name']} named the secret's folder"
                for pointed in _pointed_files(answer):
                    url = pointed if pointed.startswith("/gradio_api/file=") else f"/gradio_api/file={pointed}"
                    served = http.get(url)
                    if served.status_code == 200:
                        assert TOKEN.encode() not in served.content, f"{dep['api_name']}: {url} served the secret"
                        assert not _is_secret_picture(served.content, pixels), f"{dep['api_name']}: {url}"
        assert any("not uploaded by a user" in a or "error" in a for a in answers)
        # nothing of the secret was copied into Gradio's cache
        for cached in server.ctx.paths.gradio_cache_dir.rglob("*"):
            if cached.is_file():
                content = cached.read_bytes()
                assert TOKEN.encode() not in content, f"{cached} holds the secret"
                assert not _is_secret_picture(content, pixels), f"{cached} is the secret picture"
        # and the file route serves neither the secret nor anything outside the cache
        for secret in (picture, text_file):
            assert http.get(f"/gradio_api/file={secret}").status_code in (403, 404)
        assert http.get("/gradio_api/file=/etc/passwd").status_code in (403, 404)


def test_url_file_data_is_not_fetched_from_the_studios_own_host(studio: tuple[RunningServer, Path]) -> None:
    """A FileData ``path`` that is a URL must not make the server fetch a local address for the client."""
    server, _ = studio
    with server.client() as http:
        config = http.get("/config").json()
        pnginfo = next(d for d in config["dependencies"] if d["api_name"] == "pnginfo")
        url = f"{server.base_url}/config"
        answer = _call(http, pnginfo, [_file_data(url)])
        assert '"success": true' not in answer.replace('"success":true', '"success": true')
        assert '"api_prefix"' not in answer


def test_history_skips_symlinks_out_of_the_outputs_folder(studio: tuple[RunningServer, Path]) -> None:
    from modules.gallery.history import HistoryIndex

    server, root = studio
    (root / "h").mkdir()
    picture, _, _ = _secret_files(root / "h")
    outputs = server.ctx.paths.outputs_dir
    day = outputs / "txt2img-images" / "2026-12-07"
    day.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), "red").save(day / "00000-1.png")
    (day / "00001-2.png").symlink_to(picture)
    (outputs / "linked-folder").symlink_to(picture.parent, target_is_directory=True)
    index = HistoryIndex(outputs)
    relatives = [e.relative for e in index.scan()]
    assert "txt2img-images/2026-12-07/00000-1.png" in relatives
    assert all("00001-2" not in r and "linked-folder" not in r for r in relatives)
    assert index.entry(day / "00001-2.png") is None


def test_error_messages_name_no_absolute_server_path(studio: tuple[RunningServer, Path]) -> None:
    """A corrupt upload: Gradio's decoder names the cached file; the page is shown a relative path."""
    server, _ = studio
    with server.client() as http:
        up = http.post("/gradio_api/upload", files={"files": ("broken.png", b"\x89PNG\r\n\x1a\nnot really", "image/png")})
        cached = up.json()[0]
        config = http.get("/config").json()
        pnginfo = next(d for d in config["dependencies"] if d["api_name"] == "pnginfo")
        answer = _call(http, pnginfo, [_file_data(cached)])
    data_dir = str(server.ctx.paths.data_dir)
    assert '"process_completed"' in answer
    assert data_dir not in answer, answer
    assert "/tmp/" not in answer and "/root/" not in answer, answer


def test_scrub_keeps_urls_and_shortens_paths(tmp_path: Path) -> None:
    from modules.paths import resolve_paths

    paths = resolve_paths(tmp_path / "data")
    text = f"cannot identify image file '{tmp_path}/data/cache/gradio/ab/x.png' (see /etc/secret/key.pem)"
    assert paths.scrub(text) == "cannot identify image file 'cache/gradio/ab/x.png' (see key.pem)"
    assert paths.scrub("http://127.0.0.1:7860/gradio_api/file=x") == "http://127.0.0.1:7860/gradio_api/file=x"
    assert paths.shown(tmp_path / "data" / "outputs" / "a.png") == "outputs/a.png"
    assert paths.shown("/etc/passwd") == "passwd"


def test_input_guard_accepts_only_the_upload_cache(tmp_path: Path) -> None:
    from webui.input_files import file_paths, refusal

    cache = tmp_path / "cache" / "gradio"
    (cache / "ab").mkdir(parents=True)
    inside = cache / "ab" / "x.png"
    inside.write_bytes(b"x")
    (cache / "ab" / "escape.png").symlink_to("/etc/passwd")
    assert refusal(str(inside), cache) is None
    assert refusal(str(cache / "ab" / ".." / ".." / ".." / "secret.txt"), cache) is not None
    assert refusal(str(cache / "ab" / "escape.png"), cache) is not None  # a symlink out of the cache
    assert refusal("/etc/passwd", cache) is not None
    assert "URL" in refusal("http://127.0.0.1:7860/config", cache)
    assert "URL" in refusal("HTTPS://example.com/a.png", cache)
    body = {"data": [{"background": _file_data("/a"), "layers": [_file_data("/b")]}, "text", {"path": "not-a-file"}]}
    assert sorted(file_paths(body)) == ["/a", "/b"]
