#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each one for a while,
# starting from the committed corpus in fuzz/corpus.
#   ./scripts/fuzz.sh            # every target, 60 s each
#   ./scripts/fuzz.sh gguf 600   # one target, 10 minutes
# New findings land in build-fuzz/findings/TARGET (crash-*, leak-*, timeout-*). Once fixed,
# copy the reproducer into fuzz/corpus/KIND/bad-NAME so ctest replays it forever.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=(gguf safetensors config)
seconds=60
if [[ $# -ge 1 ]]; then targets=("$1"); fi
if [[ $# -ge 2 ]]; then seconds=$2; fi

command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }

CC=clang CXX=clang++ cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DQUANTLENS_FUZZ=ON -DQUANTLENS_TESTS=OFF -DQUANTLENS_BENCH=OFF -DQUANTLENS_NATIVE=OFF >/dev/null
cmake --build build-fuzz -j"${JOBS:-2}" --target "${targets[@]/#/fuzz_}"

for t in "${targets[@]}"; do
    work=build-fuzz/corpus/$t
    findings=build-fuzz/findings/$t
    mkdir -p "$work" "$findings"
    cp -n fuzz/corpus/"$t"/* "$work"/ 2>/dev/null || true
    echo "== fuzz_$t for ${seconds}s"
    ./build-fuzz/fuzz/fuzz_"$t" "$work" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
        -rss_limit_mb=2048 -artifact_prefix="$findings/" -print_final_stats=1
done
