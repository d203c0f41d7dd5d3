#!/usr/bin/env bash
# Builds and runs every test: the ctest suite (unit, golden, corruption, CLI, kill-and-resume)
# and, when web tooling is installed, the browser tests. Test data is read from ../shared
# (override with QUANTLENS_SHARED).
set -euo pipefail
cd "$(dirname "$0")/.."
export QUANTLENS_SHARED="${QUANTLENS_SHARED:-$(cd .. && pwd)/shared}"
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${QUANTLENS_CMAKE_ARGS:-} >/dev/null
cmake --build build -j "$JOBS"
# One test at a time: tests of one executable run as separate processes and share their
# fixture directories under build/test-tmp, so parallel ctest would race on them.
ctest --test-dir build --output-on-failure ${CTEST_ARGS:-}
if [ -x scripts/test-browser.sh ]; then
  scripts/test-browser.sh
fi
echo "test: all passed"
