#!/usr/bin/env bash
# Create or update the project's virtual environment from a requirements file.
# Usage: tools/ensure_venv.sh REQUIREMENTS_FILE
# Re-installs only when the requirements files changed since the last successful install.
set -euo pipefail
cd "$(dirname "$0")/.."
req="${1:-requirements.txt}"
venv="${ATELIER_VENV:-.venv}"
python="${PYTHON:-python3}"
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  echo "Atelier needs Python 3.10 or newer (found $("$python" --version 2>&1))" >&2
  exit 1
fi
if [ ! -x "$venv/bin/python" ]; then
  echo "Creating virtual environment in $venv"
  "$python" -m venv "$venv"
fi
stamp="$venv/.installed-$(basename "$req").sha256"
want="$(cat requirements*.txt | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "Installing $req into $venv (first run takes a few minutes)"
  # --no-cache-dir: torch's CUDA wheels from PyPI are several GB; caching them as well doubles the disk it takes
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q -r "$req"
  echo "$want" > "$stamp"
fi
# The A1111 sampling tests compare against k-diffusion's own samplers. Its package pulls in training extras
# (clean-fid, wandb, ...) that the reference does not need: it is installed without its dependencies, and
# the tests load only k_diffusion/sampling.py and external.py (which need torch, scipy, torchsde, torchdiffeq, tqdm).
if [ "$(basename "$req")" = requirements-test.txt ] && ! "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("k_diffusion") is None or u.find_spec("torchdiffeq") is None)'; then
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q --no-deps k-diffusion==0.1.1.post1 torchdiffeq==0.2.5
fi
# Offline OCR for image understanding: rapidocr-onnxruntime declares opencv-python, which would install a second
# cv2 over opencv-python-headless (and need libGL); it runs on the headless build, so it goes in without its
# dependencies (the others are in requirements.txt).
if ! "$venv/bin/python" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("rapidocr_onnxruntime") is None)'; then
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-cache-dir -q --no-deps rapidocr-onnxruntime==1.4.4
fi
