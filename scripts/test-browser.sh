#!/usr/bin/env bash
# Browser tests of the report and the web app (web/tests/*.test.mjs): Debian's chromium,
# headless, driven by playwright-core from web/node_modules. Skips (exit 0, with the reason)
# when chromium, node or node_modules are missing; ./scripts/setup.sh installs all three.
# Uses the binaries of ./build (QL_BUILD_DIR to change); screenshots go to
# <build>/test-artifacts/browser/.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${QL_BUILD_DIR:-build}"
export QL_BUILD_DIR="$BUILD"
export QUANTLENS_SHARED="${QUANTLENS_SHARED:-$(cd .. && pwd)/shared}"
CHROMIUM="${QL_CHROMIUM:-/usr/bin/chromium}"

skip() { echo "test-browser: SKIPPED: $*"; exit 0; }
[ -x "$CHROMIUM" ] || skip "chromium not found at $CHROMIUM (apt-get install chromium, or ./scripts/setup.sh)"
command -v node >/dev/null || skip "node not found (apt-get install nodejs npm)"
[ -d web/node_modules/playwright-core ] || skip "web/node_modules missing (run: cd web && npm ci)"
[ -d web/node_modules/plotly.js-dist-min ] || skip "web/node_modules missing (run: cd web && npm ci)"
for bin in quantlens ql_test_jobs; do
  [ -x "$BUILD/$bin" ] || { echo "test-browser: $BUILD/$bin missing: build it first (cmake --build $BUILD --target $bin)"; exit 1; }
done
mkdir -p "$BUILD/test-artifacts/browser"
echo "test-browser: chromium $("$CHROMIUM" --version 2>/dev/null | head -1 | awk '{print $2}'), node $(node --version)"
exec node --test --test-reporter=spec web/tests/
