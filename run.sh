#!/usr/bin/env bash
# Set up (first run) and start the Atelier studio on http://127.0.0.1:7860.
# Any flags are passed to launch.py, e.g. ./run.sh --api --port 7870
set -euo pipefail
cd "$(dirname "$0")"
tools/ensure_venv.sh requirements.txt
exec .venv/bin/python launch.py "$@"
