"""Refuse requests addressed to a host name the studio does not know: no DNS rebinding.

A web page the user merely visits (``http://attacker.example``) can re-point its own name to
127.0.0.1 once loaded; its scripts then reach the studio as a *same-origin* page, so neither CORS nor
the browser's cross-site rules stop them from generating, changing settings or reading images. What
gives such a request away is its ``Host`` header: it still names the attacker's domain. So, for
every request (API, the Gradio UI and Gradio's own routes, websockets, routes added later), the
host must be one of:

* a loopback name: ``localhost`` or any ``*.localhost`` (browsers resolve these to loopback
  themselves and no one can register them), with any port;
* an IP literal (``127.0.0.1``, ``[::1]``, ``192.168.1.20``): a rebinding attack needs a DNS name
  it controls, so an address is safe, and ``--listen --insecure`` on a LAN by IP keeps working;
* a name given with ``--allowed-hosts`` (``.name`` or ``*.name`` covers the name and its subdomains).

Anything else gets **421 Misdirected Request** with a JSON error naming the host and the flag
(a websocket is closed with 1008, policy violation). A request with no ``Host`` header (only
HTTP/1.0 allows that; browsers always send one) is accepted only when it arrived on a loopback
address, i.e. from a program on this computer; elsewhere it is refused, since nothing says whom it
was meant for. Several ``Host`` headers are refused as ambiguous.

The check is off when every surface the server offers requires a login (the UI has
``--gradio-auth`` or is not served, the API has ``--api-auth``/``--api-key`` or is not enabled):
a rebinding page cannot know the password, so auth already stops it, and tunnels (``--share``,
``--ngrok``, which require logins), whose public names are not known in advance, keep working as
before. A tunnel opened with ``--insecure`` needs its domain allowed (``--allowed-hosts .gradio.live``);
the refusal suggests exactly that.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Receive, Scope, Send

from modules.api.errors import error_body

if TYPE_CHECKING:
    from modules.flags import Flags

FLAG = "--allowed-hosts"
_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_PORT = re.compile(r"^[0-9]{0,5}$")


def needs_host_check(flags: "Flags", with_ui: bool) -> bool:
    """Whether some surface is served without a login (see the module docstring for why only then)."""
    ui_open = with_ui and not flags.gradio_auth
    api_open = flags.api_enabled and not flags.api_auth_enabled
    return ui_open or api_open


def host_of(header: str) -> str | None:
    """The host part of a ``Host`` header, lower-cased, without port or a final dot (IPv6 without
    brackets); None when the header is not a host name or address with an optional port."""
    value = header.strip().lower()
    if value.startswith("["):
        address, bracket, rest = value[1:].partition("]")
        if not bracket or not (rest == "" or (rest.startswith(":") and _PORT.match(rest[1:]))):
            return None
        return address if _is_ip(address) else None
    if value.count(":") > 1:  # an IPv6 address without brackets: not valid in Host, but not a DNS name either
        return value if _is_ip(value) else None
    name, _, port = value.partition(":")
    if not _PORT.match(port):
        return None
    name = name[:-1] if name.endswith(".") else name
    return name if name and (_HOST_NAME.match(name) or _is_ip(name)) else None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def host_allowed(host: str, allowed: tuple[str, ...] = ()) -> bool:
    """Whether ``host`` (as :func:`host_of` returns it) is loopback, an IP literal or allowed.

    ``allowed`` holds ``--allowed-hosts`` entries as :mod:`modules.flags` stores them: lower-case
    names, ``*.name`` for a name and its subdomains."""
    if _is_ip(host) or host == "localhost" or host.endswith(".localhost"):
        return True
    for entry in allowed:
        if entry.startswith("*."):
            base = entry[2:]
            if host == base or host.endswith("." + base):
                return True
        elif host == entry:
            return True
    return False


def _suggestion(host: str) -> str:
    """The flag value that would allow ``host``: the name, and for a name of three labels or more
    (a tunnel's random subdomain, say) its parent domain too."""
    parts = host.split(".")
    if len(parts) >= 3:
        return f"'{FLAG} {host}' (or '{FLAG} .{'.'.join(parts[1:])}' for all of {'.'.join(parts[1:])})"
    return f"'{FLAG} {host}'"


def refusal(header: str | None) -> str | None:
    """Why a request with this ``Host`` header value is refused (None: the host is fine).
    ``header`` None means no Host header at all; the caller decides whether that is acceptable."""
    if header is None:
        return ("The request has no Host header, so the studio cannot tell whom it was meant for: send "
                "'Host: localhost' (the studio refuses unknown host names to stop DNS-rebinding attacks).")
    host = host_of(header)
    shown = header if len(header) <= 100 else header[:97] + "..."
    if host is None:
        return f"The Host header {shown!r} is not a host name or address."
    return (f"This studio does not answer to the host name {host!r} (a guard against DNS rebinding): open it "
            f"as localhost or by IP address, or start it with {_suggestion(host)} to allow that name, "
            f"or require logins (--gradio-auth, --api-auth).")


class HostGuardMiddleware:
    """Refuse HTTP requests (421, JSON) and websockets (close 1008) for hosts :func:`host_allowed` refuses."""

    def __init__(self, app: ASGIApp, allowed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            why = self.check(scope)
            if why is not None:
                await _refuse(scope, send, why)
                return
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> str | None:
        """Why this request is refused, or None to let it through."""
        hosts = [value.decode("latin-1") for key, value in scope.get("headers", []) if key.lower() == b"host"]
        if len(hosts) > 1:
            return "The request has more than one Host header; send one."
        if not hosts:
            server = scope.get("server")
            return None if server and _is_loopback(server[0]) else refusal(None)
        host = host_of(hosts[0])
        if host is not None and host_allowed(host, self.allowed):
            return None
        return refusal(hosts[0])


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


async def _refuse(scope: Scope, send: Send, why: str) -> None:
    if scope["type"] == "websocket":  # closing before accepting: the server answers the handshake with 403
        # a close reason is at most 123 bytes, too short for the whole message
        await send({"type": "websocket.close", "code": 1008, "reason": f"host refused (DNS-rebinding check): see {FLAG}"})
        return
    body = json.dumps(error_body("MisdirectedRequest", why)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 421, "headers": headers})
    await send({"type": "http.response.body", "body": body})
