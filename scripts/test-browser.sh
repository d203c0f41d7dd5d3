#!/usr/bin/env bash
# Browser tests of the report and the web app (web/tests/*.test.mjs): Debian's chromium,
# headless, driven by playwright-core from web/node_modules. Skips (exit 0, with the reason)
# when chromium, node or node_modules are missing; ./scripts/setup.sh installs all three.
# Uses the quantlens binary of ./build (QL_BUILD_DIR to change): the tests build their job
# store with a small real sweep, plan, verify and calibrate of llama-8m from $QUANTLENS_SHARED
# (about a minute on 2 cores), and the server starts real jobs. Screenshots go to
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
[ -x "$BUILD/quantlens" ] || { echo "test-browser: $BUILD/quantlens missing: build it first (cmake --build $BUILD --target quantlens)"; exit 1; }
for f in models/llama-8m/config.json data/eval.txt data/calib.txt; do
  [ -e "$QUANTLENS_SHARED/$f" ] || { echo "test-browser: $QUANTLENS_SHARED/$f missing (set QUANTLENS_SHARED to the shared test data)"; exit 1; }
done
mkdir -p "$BUILD/test-artifacts/browser"
echo "test-browser: chromium $("$CHROMIUM" --version 2>/dev/null | head -1 | awk '{print $2}'), node $(node --version)"
exec node --test --test-reporter=spec web/tests/
