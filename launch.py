"""Start Atelier: ``python launch.py [flags]`` (see ``--help``; A1111 flag spellings).

Start-up stays light: no model import, no hashing and no network before the server listens;
the checkpoint loads in the background on the job queue right after.

Stopping: SIGTERM or Ctrl-C (SIGINT) is a clean stop. While the server runs, uvicorn receives the
signal (the running job is interrupted at its next step, see :func:`modules.server.serve`); once it
has shut down it re-raises the signal, which the handlers installed here turn into
:class:`StopRequested`. Then the queue is stopped, the running job recorded as interrupted (or queued
again when it can resume), the job file checkpointed and closed, and the process exits with 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from types import FrameType

from modules.distributed.errors import RayStartError
from modules.flags import FlagError, parse_flags
from modules.lazy_imports import install_import_hook

log = logging.getLogger("atelier")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequested(Exception):
    """SIGINT or SIGTERM asked for a clean stop (raised once, by the handler below)."""


def install_stop_handlers() -> None:
    """SIGINT/SIGTERM raise :class:`StopRequested` once; later ones (while closing) are logged only,
    so a second Ctrl-C cannot cut the clean stop short and leave the job file half-written."""
    requested: list[str] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if requested:
            log.warning("%s received; already stopping", name)
            return
        requested.append(name)
        raise StopRequested(name)

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def main(argv: list[str]) -> int:
    started = time.perf_counter()
    try:
        flags = parse_flags(argv)
    except FlagError as exc:
        print(f"launch.py: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    if flags.is_public and flags.insecure:
        logging.warning("--insecure: the studio is reachable from the network WITHOUT a password")
    install_stop_handlers()
    install_import_hook()  # before any thread: no request thread sees a half-imported torch/diffusers
    from modules.remote import Tunnel, close_all, start_remote_access

    url = f"http://{'127.0.0.1' if not flags.listen else '0.0.0.0'}:{flags.effective_port}"
    tunnels: list[Tunnel] = []
    ctx = None

    def ready() -> None:
        what = "API" if flags.nowebui else "studio"
        print(f"Atelier {what} running on {url} (startup {time.perf_counter() - started:.1f} s)", flush=True)
        # --share / --ngrok: after the local server is up, on this start-up thread (never delays it)
        tunnels.extend(start_remote_access(flags, say=lambda line: print(line, flush=True)))

    try:
        from modules.app_context import create_app_context
        from modules.server import serve

        ctx = create_app_context(flags)
        serve(ctx, on_ready=ready)
    except StopRequested as stop:
        log.info("%s: stopping cleanly", stop)
    except RayStartError as exc:  # --ray: Ray or its actors could not start
        print(f"launch.py: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(f"launch.py: error: cannot serve on {url}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        close_all(tunnels)
        if ctx is not None:
            ctx.close()
            log.info("job queue stopped and job database closed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
