"""Auth covers every route the server registers (found by enumerating ``app.routes``, including
routes added after start-up), API keys and HTTP Basic, CORS off by default, body size limit."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi import APIRouter
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Mount

from modules.app_context import create_app_context
from modules.flags import parse_flags
from modules.server import create_http_app

KEY = "security-key-123"
BASIC = "Basic " + base64.b64encode(b"ann:s3cret").decode()


@pytest.fixture(scope="module")
def ui_app(tmp_path_factory: pytest.TempPathFactory):
    """The full studio: Gradio UI (with its own login) plus the API behind --api-auth and a key."""
    data = tmp_path_factory.mktemp("security-data")
    flags = parse_flags(["--api", "--data-dir", str(data), "--ckpt-dir", str(_empty(data / "ckpt")),
                         "--skip-load-model-at-start", "--api-auth", "ann:s3cret", "--api-key", KEY,
                         "--gradio-auth", "ui:pw"])
    ctx = create_app_context(flags)
    app = create_http_app(ctx, with_ui=True)
    # routes an extension would add after the app is built: covered without anyone asking
    app.add_api_route("/extension/hello", lambda: {"hello": "world"}, methods=["GET"])
    late = APIRouter(prefix="/controlnet")
    late.add_api_route("/version", lambda: {"version": 2}, methods=["GET"])
    app.include_router(late)
    yield app
    ctx.close()


def _empty(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def _api_routes(app) -> list[tuple[str, str]]:
    found = []
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):
            continue
        methods = sorted((route.methods or {"GET"}) - {"HEAD"})
        path = (route.path or "").replace("{job_id}", "some-job")
        found.append((methods[0], path))
    return found


def test_every_registered_route_needs_api_credentials(ui_app) -> None:
    routes = _api_routes(ui_app)
    paths = {p for _, p in routes}
    assert {"/sdapi/v1/txt2img", "/api/v1/jobs", "/internal/ping", "/docs", "/openapi.json",
            "/extension/hello", "/controlnet/version", "/api/v1/events"} <= paths
    assert len(routes) > 40
    client = TestClient(ui_app)
    for method, path in routes:
        r = client.request(method, path)
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"] == "Unauthorized" and "authentication required" in r.json()["detail"]
        assert r.headers["www-authenticate"].startswith("Basic")


def test_credentials_open_the_api(ui_app) -> None:
    client = TestClient(ui_app)
    for headers in ({"Authorization": BASIC}, {"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}):
        assert client.get("/internal/ping", headers=headers).status_code == 200
        assert client.get("/extension/hello", headers=headers).json() == {"hello": "world"}
        assert client.get("/openapi.json", headers=headers).status_code == 200
    bad_key = client.get("/sdapi/v1/samplers", headers={"X-API-Key": "wrong-key-000"})
    assert bad_key.status_code == 401 and bad_key.json()["detail"] == "Invalid API key"
    bad_pass = client.get("/sdapi/v1/samplers", headers={"Authorization": "Basic " + base64.b64encode(b"ann:x").decode()})
    assert bad_pass.status_code == 401 and bad_pass.json()["detail"] == "Incorrect username or password"
    junk = client.get("/sdapi/v1/samplers", headers={"Authorization": "Basic %%%"})
    assert junk.status_code == 401
    # unknown API paths are refused before they can say anything
    assert client.get("/sdapi/v1/no-such-route").status_code == 401


def test_ui_keeps_its_own_login_and_api_still_needs_api_credentials(ui_app) -> None:
    client = TestClient(ui_app)
    page = client.get("/", follow_redirects=False)
    assert page.status_code == 200 and "<html" in page.text.lower()  # Gradio's page (its own login form)
    assert client.get("/config").status_code == 401  # Gradio's own login, not ours
    login = client.post("/login", data={"username": "ui", "password": "pw"}, follow_redirects=False)
    assert login.status_code == 200
    assert client.get("/config").status_code == 200
    # logged in to the UI, the API still asks for API credentials
    assert client.get("/sdapi/v1/sd-models").status_code == 401


def test_openapi_documents_auth_and_errors(ui_app) -> None:
    doc = TestClient(ui_app).get("/openapi.json", headers={"X-API-Key": KEY}).json()
    assert set(doc["components"]["securitySchemes"]) == {"basicAuth", "bearerAuth", "apiKeyHeader"}
    for path, item in doc["paths"].items():
        for method, op in item.items():
            assert "200" in op["responses"] or "201" in op["responses"], (method, path)
            assert "401" in op["responses"], (method, path)
            for code, response in op["responses"].items():
                if int(code) >= 400:
                    assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorBody"}
            ok = op["responses"].get("200") or op["responses"]["201"]
            assert ok.get("content"), (method, path)  # a response model on every route


def test_cors_is_off_by_default_and_on_when_asked(tmp_path: Path) -> None:
    preflight = {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}
    for argv, allowed in ((["--nowebui"], False),
                          (["--nowebui", "--cors-allow-origins", "http://localhost:3000"], True)):
        ctx = create_app_context(parse_flags([*argv, "--data-dir", str(tmp_path / str(allowed)),
                                              "--skip-load-model-at-start"]))
        try:
            client = TestClient(create_http_app(ctx), base_url="http://localhost")  # no login: the Host check is on
            r = client.get("/internal/ping", headers={"Origin": "http://localhost:3000"})
            assert ("access-control-allow-origin" in r.headers) is allowed
            r = client.options("/sdapi/v1/txt2img", headers={**preflight, "Origin": "http://localhost:3000"})
            assert (r.headers.get("access-control-allow-origin") == "http://localhost:3000") is allowed
            r = client.options("/sdapi/v1/txt2img", headers=preflight)
            assert "access-control-allow-origin" not in r.headers
        finally:
            ctx.close()


def test_body_size_limit(studio_factory) -> None:
    srv = studio_factory(["--nowebui", "--max-body-mb", "1"], models=(), name="body-limit")
    with srv.client() as http:
        big = b'{"image": "' + b"A" * (1024 * 1024 + 10) + b'"}'
        r = http.post("/sdapi/v1/png-info", content=big, headers={"content-type": "application/json"})
        assert r.status_code == 413 and "--max-body-mb" in r.json()["detail"]

        def chunks():
            yield b'{"image": "'
            for _ in range(20):
                yield b"A" * 100_000
            yield b'"}'

        r = http.post("/sdapi/v1/png-info", content=chunks(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and "1 MiB" in r.json()["detail"]
        small = http.post("/sdapi/v1/png-info", json={"image": "AAAA"})
        assert small.status_code == 400  # under the limit: read and refused as an image, not as a size


def test_api_keys_flag_validation() -> None:
    from modules.flags import FlagError

    with pytest.raises(FlagError, match="at least 8"):
        parse_flags(["--api-key", "short"])
    with pytest.raises(FlagError, match="--cors-allow-origins"):
        parse_flags(["--cors-allow-origins", "not a url"])
    assert parse_flags(["--listen", "--nowebui", "--api-key", "long-enough-key"]).api_auth_enabled
