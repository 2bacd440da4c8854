"""No DNS rebinding: while some surface has no login, the studio answers only to loopback names, IP
addresses and ``--allowed-hosts`` names, on every route (API, the Gradio UI and Gradio's own routes,
unknown paths, websockets, routes added later); with logins everywhere the check is off. Also: a
cross-site "simple" request (a ``text/plain`` body, which a page may POST without a preflight) is
not taken as JSON."""

from __future__ import annotations

import json
import re
import socket
from typing import Iterator

import httpx
import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from starlette.applications import Starlette
from starlette.routing import Mount, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from modules.api.host_guard import HostGuardMiddleware, host_allowed, host_of, needs_host_check
from modules.app_context import create_app_context
from modules.flags import FlagError, parse_flags
from modules.server import create_http_app
from tests.helpers.server import RunningServer

FOREIGN = "attacker.example"


def _allowed(header: str, allowed: tuple[str, ...] = ()) -> bool:
    host = host_of(header)
    return host is not None and host_allowed(host, allowed)


@pytest.mark.parametrize("header", [
    "localhost", "localhost:7860", "LOCALHOST:7860", "LocalHost", "localhost.", "localhost.:7860",
    "studio.localhost:7860", "a.b.localhost", "127.0.0.1", "127.0.0.1:7860", "127.0.0.2:80",
    "[::1]", "[::1]:7860", "[0:0:0:0:0:0:0:1]:7860", "192.168.1.20:7860", "10.0.0.5", "[fe80::1]:8080",
    "localhost:",
])
def test_loopback_names_and_ip_literals_are_accepted(header: str) -> None:
    assert _allowed(header)


@pytest.mark.parametrize("header", [
    "attacker.example", "attacker.example:7860", "ATTACKER.example.", "localhost.attacker.example",
    "localhost.attacker.example:7860", "127.0.0.1.nip.io", "127.0.0.1.nip.io:7860", "evil-localhost",
    "localhostx", "xlocalhost:7860", "0x7f000001", "2130706433", "studio.lan", "", ":7860", "localhost:abc",
    "localhost:7860:1", "[::1", "[::1]x", "[::1]:abc", "[localhost]", "local host", "localhost/x",
    "user@localhost", "127.0.0.1:7860@evil.example",
])
def test_other_names_are_refused(header: str) -> None:
    assert not _allowed(header)


def test_allowed_hosts_exact_and_wildcards() -> None:
    exact = ("studio.lan",)
    assert _allowed("studio.lan:7860", exact) and _allowed("STUDIO.LAN.", exact) and _allowed("studio.lan", exact)
    assert not _allowed("www.studio.lan", exact) and not _allowed("studio.lan.evil.example", exact)
    assert not _allowed("evilstudio.lan", exact)
    wild = ("*.studio.lan",)
    assert _allowed("a.studio.lan:7860", wild) and _allowed("x.y.Studio.LAN", wild) and _allowed("studio.lan", wild)
    assert not _allowed("evilstudio.lan", wild) and not _allowed("studio.lan.evil.example", wild)
    assert not _allowed(FOREIGN, wild)


def test_allowed_hosts_flag_parsing() -> None:
    flags = parse_flags(["--allowed-hosts", "Studio.LAN., .Home.arpa", "--allowed-hosts", "*.box.lan,10.0.0.7,[::1]"])
    assert flags.allowed_hosts == ("studio.lan", "*.home.arpa", "*.box.lan")  # IP addresses always pass anyway
    assert parse_flags([]).allowed_hosts == ()
    host = host_of("pc.home.arpa:7860")
    assert host is not None and host_allowed(host, flags.allowed_hosts)


@pytest.mark.parametrize("value, says", [
    ("studio.lan:7860", "without a port"), ("*", "turn the DNS-rebinding check off"), ("a b", "host names like"),
    ("*.", "host names like"), ("x..y", "host names like"), ("http://studio.lan", "without a port"),
    ("studio.lan/x", "host names like"), ("*.*.lan", "host names like"),
])
def test_bad_allowed_hosts_are_one_line_flag_errors(value: str, says: str) -> None:
    with pytest.raises(FlagError, match="--allowed-hosts") as caught:
        parse_flags(["--allowed-hosts", value])
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_the_check_is_off_only_when_every_served_surface_needs_a_login() -> None:
    def needs(*argv: str, with_ui: bool) -> bool:
        return needs_host_check(parse_flags(list(argv)), with_ui)

    assert needs(with_ui=True)
    assert needs("--api", with_ui=True)
    assert needs("--api", "--gradio-auth", "u:p", with_ui=True)          # the API is open
    assert needs("--api", "--api-auth", "u:p", with_ui=True)             # the UI is open
    assert needs("--nowebui", with_ui=False)
    assert not needs("--gradio-auth", "u:p", with_ui=True)                # no API served
    assert not needs("--api", "--api-auth", "u:p", "--gradio-auth", "u:p", with_ui=True)
    assert not needs("--api", "--api-key", "long-enough-key", "--gradio-auth", "u:p", with_ui=True)
    assert not needs("--nowebui", "--api-key", "long-enough-key", with_ui=False)
    assert not needs("--share", "--gradio-auth", "u:p", with_ui=True)    # tunnels with a login work as before


async def _echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hello")
    await websocket.close()


def _guarded() -> HostGuardMiddleware:
    return HostGuardMiddleware(Starlette(routes=[WebSocketRoute("/ws", _echo)]), allowed=("studio.lan",))


def test_missing_or_repeated_host_headers() -> None:
    guard = _guarded()
    loopback = {"type": "http", "headers": [], "server": ("127.0.0.1", 7860)}
    lan = {"type": "http", "headers": [], "server": ("192.168.1.20", 7860)}
    unix = {"type": "http", "headers": [], "server": None}
    assert guard.check(loopback) is None  # HTTP/1.0 from a program on this computer
    assert "no Host header" in (guard.check(lan) or "") and "no Host header" in (guard.check(unix) or "")
    twice = {"type": "http", "headers": [(b"host", b"localhost"), (b"host", FOREIGN.encode())],
             "server": ("127.0.0.1", 7860)}
    assert "more than one Host header" in (guard.check(twice) or "")
    assert guard.check({**lan, "headers": [(b"host", b"studio.lan:7860")]}) is None
    why = guard.check({**lan, "headers": [(b"host", b"box.studio.lan")]}) or ""
    assert "'box.studio.lan'" in why and "--allowed-hosts box.studio.lan" in why and ".studio.lan" in why


def test_websockets_are_closed_with_a_policy_code() -> None:
    with pytest.raises(WebSocketDisconnect) as caught:
        with TestClient(_guarded()).websocket_connect(f"ws://{FOREIGN}/ws") as ws:
            ws.receive_text()
    assert caught.value.code == 1008 and "--allowed-hosts" in caught.value.reason
    with TestClient(_guarded()).websocket_connect("ws://localhost:7860/ws") as ws:
        assert ws.receive_text() == "hello"


# -- the whole studio, in process: every route the app has (the UI's included) ----------------------------

@pytest.fixture(scope="module")
def studio(tmp_path_factory: pytest.TempPathFactory):
    """The studio with the UI and the API, no logins: the host check is on."""
    data = tmp_path_factory.mktemp("host-guard-app")
    ctx = create_app_context(parse_flags(["--api", "--data-dir", str(data), "--skip-load-model-at-start"]))
    app = create_http_app(ctx, with_ui=True)
    app.add_api_route("/extension/hello", lambda: {"hello": "world"}, methods=["GET"])  # added later
    app.add_api_websocket_route("/extension/ws", _echo)
    yield app
    ctx.close()


def _gradio_routes(app) -> list:
    ui = app.router.default
    while not hasattr(ui, "router"):  # the UI may be wrapped (error scrubbing): the Gradio app is inside
        assert hasattr(ui, "app"), f"cannot find the Gradio app inside {ui!r}"
        ui = ui.app
    return list(ui.router.routes)


def _requests(routes: list) -> Iterator[tuple[str, str]]:
    for route in iter_route_contexts(routes):
        if isinstance(route.original_route, Mount):
            continue
        path = re.sub(r"\{[^}]+\}", "x", route.path or "/")
        for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
            yield method, path


def _refused(answer: httpx.Response, host: str = FOREIGN) -> bool:
    if answer.status_code != 421:
        return False
    detail = answer.json()["detail"]
    return answer.json()["error"] == "MisdirectedRequest" and "--allowed-hosts" in detail and host in detail


def test_every_route_refuses_a_foreign_host_in_process(studio) -> None:
    requests = sorted(set(_requests(studio.router.routes)) | set(_requests(_gradio_routes(studio))))
    assert ("POST", "/gradio_api/queue/join") in requests and ("GET", "/config") in requests
    assert ("GET", "/extension/hello") in requests and ("POST", "/sdapi/v1/txt2img") in requests
    requests += [("GET", "/no/such/path"), ("GET", "/gradio_api/file=README.md"), ("OPTIONS", "/sdapi/v1/options")]
    client = TestClient(studio, base_url=f"http://{FOREIGN}:7860")
    wrong = [(m, p, r.status_code) for m, p in requests if not _refused(r := client.request(m, p, content=b"{}"))]
    assert not wrong, wrong
    for path in ("/extension/ws", "/gradio_api/anything"):
        with pytest.raises(WebSocketDisconnect) as caught:
            with client.websocket_connect(f"ws://{FOREIGN}:7860{path}") as ws:
                ws.receive_text()
        assert caught.value.code == 1008
    with client.websocket_connect("ws://localhost:7860/extension/ws") as ws:
        assert ws.receive_text() == "hello"


# -- real servers ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(studio_factory) -> RunningServer:
    return studio_factory(["--api"], models=(), name="host-guard-server")


def _live_requests(srv: RunningServer) -> list[tuple[str, str]]:
    with srv.client() as http:
        doc = http.get("/openapi.json").json()
    found = [(method.upper(), re.sub(r"\{[^}]+\}", "x", path))
             for path, item in doc["paths"].items() for method in item if method in ("get", "post", "delete")]
    assert ("GET", "/sdapi/v1/options") in found and ("POST", "/api/v1/jobs") in found
    return found + [
        ("GET", "/"), ("GET", "/config"), ("GET", "/theme.css"), ("GET", "/gradio_api/info"),
        ("POST", "/gradio_api/queue/join"), ("POST", "/gradio_api/upload"), ("GET", "/gradio_api/queue/data"),
        ("GET", "/gradio_api/file=README.md"), ("GET", "/gradio_api/startup-events"), ("GET", "/docs"),
        ("GET", "/openapi.json"), ("GET", "/no/such/path"), ("OPTIONS", "/sdapi/v1/txt2img"),
    ]


def _send(http: httpx.Client, method: str, path: str, host: str) -> httpx.Response:
    """One request with this Host header; only the head of the answer is read (some routes stream).
    Bodies are a JSON list, which every body model refuses: nothing is queued or changed."""
    with http.stream(method, path, headers={"Host": host, "content-type": "application/json"},
                     content=b"[]" if method == "POST" else None) as answer:
        if answer.status_code == 421:
            answer.read()
        return answer


@pytest.mark.slow
def test_every_route_of_a_real_server_refuses_a_foreign_host(server: RunningServer) -> None:
    requests = _live_requests(server)
    port = server.port
    with server.client() as http:
        for host in (FOREIGN, f"{FOREIGN}:{port}", f"localhost.{FOREIGN}:{port}", f"127.0.0.1.nip.io:{port}"):
            shown = host.rsplit(":", 1)[0] if host.count(":") else host
            wrong = [(m, p, a.status_code) for m, p in requests
                     if not _refused(a := _send(http, m, p, host), shown)]
            assert not wrong, (host, wrong)
        for host in (f"localhost:{port}", "localhost", f"127.0.0.1:{port}", "127.0.0.1", f"[::1]:{port}",
                     f"studio.localhost:{port}"):
            refused = [(m, p, a.status_code) for m, p in requests if (a := _send(http, m, p, host)).status_code == 421]
            assert not refused, (host, refused)
        assert http.get("/sdapi/v1/options", headers={"Host": f"localhost:{port}"}).status_code == 200
        assert http.get("/config", headers={"Host": f"localhost:{port}"}).status_code == 200


@pytest.mark.slow
def test_a_request_without_host_from_this_computer_is_served(server: RunningServer) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(b"GET /internal/ping HTTP/1.0\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer


@pytest.mark.slow
def test_text_plain_bodies_are_not_taken_as_json(server: RunningServer) -> None:
    """A page on any site may POST a text/plain body without a preflight; its JSON must not be read."""
    with server.client() as http:
        before = http.get("/sdapi/v1/options").json()
        jobs_before = http.get("/api/v1/jobs").json()
        key, value = "samples_format", "jpg" if before.get("samples_format") != "jpg" else "webp"
        simple = {"content-type": "text/plain"}
        for path, body in (("/sdapi/v1/txt2img", {"prompt": "a red circle", "steps": 1}),
                           ("/api/v1/jobs", {"type": "txt2img", "prompt": "a red circle", "steps": 1}),
                           ("/sdapi/v1/options", {key: value})):
            answer = http.post(path, content=json.dumps(body).encode(), headers=simple)
            assert answer.status_code == 422, (path, answer.status_code, answer.text)
            assert "JSON" in answer.json()["detail"], answer.text
        assert http.get("/sdapi/v1/options").json()[key] == before[key]
        assert http.get("/api/v1/jobs").json() == jobs_before


@pytest.mark.slow
def test_allowed_hosts_flag_on_a_real_server(studio_factory) -> None:
    srv = studio_factory(["--api", "--allowed-hosts", "studio.lan"], models=(), name="allowed-hosts")
    with srv.client() as http:
        assert http.get("/sdapi/v1/options", headers={"Host": f"studio.lan:{srv.port}"}).status_code == 200
        assert http.get("/config", headers={"Host": "STUDIO.lan."}).status_code == 200
        assert _refused(http.get("/config", headers={"Host": f"www.studio.lan:{srv.port}"}), "www.studio.lan")


@pytest.mark.slow
def test_with_logins_everywhere_the_check_is_off_and_auth_applies(studio_factory) -> None:
    srv = studio_factory(["--api", "--api-auth", "u:p", "--gradio-auth", "u:p"], models=(), name="logins")
    with srv.client() as http:
        foreign = {"Host": f"{FOREIGN}:{srv.port}"}
        assert http.get("/sdapi/v1/options", headers=foreign).status_code == 401
        assert http.get("/sdapi/v1/options", headers=foreign, auth=("u", "p")).status_code == 200
        config = http.get("/config", headers=foreign)
        assert config.status_code in (200, 401) and config.status_code != 421  # Gradio's own login decides
