#!/usr/bin/env bash
# Installs what a fresh Debian 12 machine lacks (apt-get, npm), then builds Release into
# ./build. Safe to run again: installs only what is missing, rebuilds incrementally.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential cmake pkg-config git
  libfmt-dev libspdlog-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev libcpp-httplib-dev
  libsqlite3-dev libcurl4-openssl-dev libssl-dev libopenblas-dev libpcre2-dev libxxhash-dev
  libgtest-dev libgmock-dev libbenchmark-dev
)
# Node.js, npm and Chromium are checked as commands, not packages: a machine may already carry a
# newer Node.js with its own npm (e.g. NodeSource's), and Debian's npm package conflicts with it.
command -v node >/dev/null || APT_PACKAGES+=(nodejs)
command -v npm >/dev/null || APT_PACKAGES+=(npm)
command -v chromium >/dev/null || [ -x /usr/bin/chromium ] || APT_PACKAGES+=(chromium)
# Optional MPI sharding of sweeps: QUANTLENS_MPI=ON ./scripts/setup.sh (the default build needs no MPI).
if [ "${QUANTLENS_MPI:-OFF}" = "ON" ]; then
  APT_PACKAGES+=(libopenmpi-dev openmpi-bin)
  QUANTLENS_CMAKE_ARGS="${QUANTLENS_CMAKE_ARGS:-} -DQUANTLENS_MPI=ON"
fi
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Front-end packages (Plotly for reports, playwright-core for browser tests).
if [ -f web/package.json ] && command -v npm >/dev/null; then
  if [ ! -d web/node_modules ] || [ web/package.json -nt web/node_modules ]; then
    (cd web && npm ci --no-audit --no-fund --loglevel=error 2>/dev/null || npm install --no-audit --no-fund --loglevel=error)
  fi
fi

JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release ${QUANTLENS_CMAKE_ARGS:-}
cmake --build build -j "$JOBS"
echo "setup: built ./build/quantlens"
