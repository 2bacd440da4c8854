#!/usr/bin/env bash
# Set up (first run) and run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
tools/ensure_venv.sh requirements-test.txt

# The browser tests (tests/e2e) drive Debian's Chromium through Playwright. Install it when it is missing
# and we are root; never `playwright install` (no browser downloads). Without it those tests skip.
apt_quiet() { DEBIAN_FRONTEND=noninteractive timeout 900 apt-get "$@" >/dev/null 2>&1; }
if [ -z "${ATELIER_CHROMIUM:-}" ] && [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "test.sh: installing Debian's chromium for the browser tests (apt-get)"
    if ! apt_quiet install -y --no-install-recommends chromium \
        && ! { apt_quiet update && apt_quiet install -y --no-install-recommends chromium; }; then
      echo "test.sh: could not install chromium; the browser tests will be skipped"
    fi
  else
    echo "test.sh: /usr/bin/chromium is missing (install it as root: apt-get install chromium);" \
      "the browser tests will be skipped"
  fi
fi
set +e
# three worker processes on the two-core machines: about a third of the tests' time is spent waiting (on a browser,
# a started studio, a subprocess), which a third worker fills (measured: 12:22 against 13:10 with two). Each test
# file runs whole on one worker, so its module-scoped studio is never shared. ATELIER_TEST_WORKERS=0 runs everything in this process.
.venv/bin/python -m pytest -n "${ATELIER_TEST_WORKERS:-3}" --dist loadfile "$@"
rc=$?
set -e
# pytest exits 5 when it collected no tests: that is a failure for us too
exit $rc
