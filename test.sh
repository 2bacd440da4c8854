#!/usr/bin/env bash
# Set up (first run) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
tools/ensure_venv.sh requirements-test.txt
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is a failure for us too
exit $rc
