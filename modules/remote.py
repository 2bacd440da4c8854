"""Remote access to a running studio: a Gradio share link (``--share``) or an ngrok tunnel (``--ngrok TOKEN``).

Both are best effort. They open after the server listens, on the start-up thread, so a slow or absent
network never delays the local page. When a tunnel cannot be opened (offline, the service unreachable,
``--offline``), one line says so and the studio keeps serving locally. ``modules.flags`` already refuses
either flag without ``--gradio-auth`` (or ``--insecure``).
"""

from __future__ import annotations

import logging
import secrets
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from modules.flags import Flags

log = logging.getLogger(__name__)


class RemoteAccessError(RuntimeError):
    """A tunnel could not be opened; the message is one line for the user."""


@dataclass
class Tunnel:
    kind: str                      # "share" or "ngrok"
    url: str
    close: Callable[[], None]


def _cause(exc: BaseException) -> str:
    """The innermost readable reason of ``exc``, on one short line."""
    while exc.__cause__ is not None and str(exc.__cause__):
        exc = exc.__cause__
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def open_share_link(port: int, *, host: str = "127.0.0.1") -> Tunnel:
    """A public ``*.gradio.live`` link to ``host:port`` through Gradio's share server (frpc)."""
    from gradio import networking, tunneling

    try:
        url = networking.setup_tunnel(host, port, secrets.token_urlsafe(32), None, None)
    except Exception as exc:  # noqa: BLE001 - httpx, OSError, RuntimeError...: all mean "no link"
        raise RemoteAccessError(f"could not reach the Gradio share server ({_cause(exc)})") from exc

    def close() -> None:
        for tunnel in list(tunneling.CURRENT_TUNNELS):
            if tunnel.url == url:
                tunnel.kill()

    return Tunnel("share", url, close)


def open_ngrok_tunnel(port: int, token: str, *, host: str = "127.0.0.1") -> Tunnel:
    """A public ngrok URL to ``host:port`` (pyngrok downloads the ngrok agent on first use)."""
    try:
        from pyngrok import conf, installer, ngrok
    except ImportError:
        raise RemoteAccessError("pyngrok is not installed (pip install pyngrok)") from None
    if not sys.stdout.isatty():  # its download progress is a "\r" line: keep logs one line per event
        installer._print_progress_enabled = False
    config = conf.PyngrokConfig(auth_token=token, monitor_thread=False, startup_timeout=15)
    try:
        tunnel = ngrok.connect(f"{host}:{port}", "http", pyngrok_config=config)
    except Exception as exc:  # noqa: BLE001 - install, start-up and API errors all mean "no tunnel"
        raise RemoteAccessError(f"could not open an ngrok tunnel ({_cause(exc)})") from exc
    url = str(tunnel.public_url)

    def close() -> None:
        try:
            ngrok.disconnect(url, pyngrok_config=config)
        finally:
            ngrok.kill(pyngrok_config=config)

    return Tunnel("ngrok", url, close)


def start_remote_access(flags: "Flags", *, say: Callable[[str], None] = print) -> list[Tunnel]:
    """Open the tunnels the flags ask for; every outcome is one line through ``say``. Never raises."""
    port = flags.effective_port
    local = f"http://127.0.0.1:{port}"
    wanted: list[tuple[str, Callable[[], Tunnel]]] = []
    if flags.share:
        wanted.append(("--share", lambda: open_share_link(port)))
    if flags.ngrok:
        token = flags.ngrok
        wanted.append(("--ngrok", lambda: open_ngrok_tunnel(port, token)))
    tunnels: list[Tunnel] = []
    for flag, opener in wanted:
        if flags.offline:
            say(f"{flag}: no public URL because of --offline; the studio is served locally at {local}")
            continue
        try:
            tunnel = opener()
        except RemoteAccessError as exc:
            say(f"{flag}: no public URL, {exc}; the studio is still served locally at {local}")
            continue
        guard = "login required" if flags.gradio_auth or flags.api_auth_enabled else "NO login: --insecure"
        say(f"{flag}: public URL {tunnel.url} ({guard})")
        tunnels.append(tunnel)
    return tunnels


def close_all(tunnels: list[Tunnel]) -> None:
    for tunnel in tunnels:
        try:
            tunnel.close()
        except Exception:  # noqa: BLE001 - closing is best effort at shutdown
            log.debug("closing the %s tunnel failed", tunnel.kind, exc_info=True)
