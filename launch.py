"""Start Atelier: ``python launch.py [flags]`` (see ``--help``; A1111 flag spellings).

Start-up stays light: no model import, no hashing and no network before the server listens;
the checkpoint loads in the background on the job queue right after.
"""

from __future__ import annotations

import logging
import sys
import time

from modules.flags import FlagError, parse_flags


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
    from modules.app_context import create_app_context
    from modules.remote import Tunnel, close_all, start_remote_access
    from modules.server import serve

    ctx = create_app_context(flags)
    url = f"http://{'127.0.0.1' if not flags.listen else '0.0.0.0'}:{flags.effective_port}"
    tunnels: list[Tunnel] = []

    def ready() -> None:
        what = "API" if flags.nowebui else "studio"
        print(f"Atelier {what} running on {url} (startup {time.perf_counter() - started:.1f} s)", flush=True)
        # --share / --ngrok: after the local server is up, on this start-up thread (never delays it)
        tunnels.extend(start_remote_access(flags, say=lambda line: print(line, flush=True)))

    try:
        serve(ctx, on_ready=ready)
    except OSError as exc:  # e.g. the port is taken
        print(f"launch.py: error: cannot serve on {url}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    finally:
        close_all(tunnels)
        ctx.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
