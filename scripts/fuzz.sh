#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each one for a while,
# starting from the committed seed corpus in fuzz/corpus (read only).
#   ./scripts/fuzz.sh                          # every target, 60 s each, one at a time
#   ./scripts/fuzz.sh -t 600 -j 8 gguf recipe  # 10 minutes each, up to 8 targets at once
#   ./scripts/fuzz.sh -t 600 -j 10 -w 4        # every target at once, 4 fuzzing processes each
#   ./scripts/fuzz.sh --install /opt/ql-fuzz   # build, install binaries + seeds, run nothing
#   /opt/ql-fuzz/bin/fuzz.sh --bin /opt/ql-fuzz/bin -t 3600 -j 10   # on another machine
# Options:
#   -t SECONDS      fuzzing time per target (-max_total_time), default 60
#   -j N            targets run concurrently, default 1
#   -w N            fuzzing processes per target (libFuzzer -fork=N, keeps going after a
#                   crash, timeout or OOM and collects them all), default 1 (stops at the first)
#   -m MB           memory limit per process (-rss_limit_mb and -malloc_limit_mb), default 2048
#   -B DIR          build directory, default build-fuzz
#   -o DIR          output: DIR/corpus/TARGET (new inputs), DIR/crashes/TARGET (crash-*,
#                   leak-*, timeout-*, oom-*), DIR/logs/TARGET.log; default BUILD/fuzz-out
#   --bin DIR       run the fuzz_* binaries in DIR and build nothing (copied binaries)
#   --seeds DIR     seed corpus root holding one folder per target, default fuzz/corpus (or,
#                   with --bin, DIR/../share/quantlens/fuzz-corpus when that exists)
#   --install PFX   build, then install bin/fuzz_*, bin/fuzz.sh and the seed corpus under PFX
# The binaries link the system's shared libraries; the sanitizer and libFuzzer runtimes are
# linked statically (clang's default). Debian 12 packages they need (check with ldd):
#   gguf safetensors config imatrix recipe st_index: libstdc++6 libfmt9 libxxhash0
#     libyaml-cpp0.7
#   tokenizer zoo params server, in addition: libsqlite3-0 libcurl4 libssl3 libopenblas0
#     libpcre2-8-0 libcpp-httplib0.11 (and what they pull in)
# A crash reproduces with `fuzz_TARGET FILE`; once fixed, copy the file into
# fuzz/corpus/TARGET/bad-NAME (or ok-NAME) so ctest replays it forever.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
all_targets=(gguf safetensors config imatrix recipe tokenizer st_index zoo params server)
seconds=60 parallel=1 workers=1 mem=2048 build="" out="" bin="" seeds="" prefix=""
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit "${1:-2}"; }
while [[ $# -gt 0 ]]; do
    case $1 in
        -t) seconds=$2; shift 2 ;;
        -j) parallel=$2; shift 2 ;;
        -w) workers=$2; shift 2 ;;
        -m) mem=$2; shift 2 ;;
        -B) build=$2; shift 2 ;;
        -o) out=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        --seeds) seeds=$2; shift 2 ;;
        --install) prefix=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "fuzz.sh: unknown option $1" >&2; usage ;;
        *) break ;;
    esac
done
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=("${all_targets[@]}")
for t in "${targets[@]}"; do
    [[ " ${all_targets[*]} " == *" $t "* ]] || { echo "fuzz.sh: no target '$t' (${all_targets[*]})" >&2; exit 2; }
done

if [[ -z $bin ]]; then
    build=${build:-$src/build-fuzz}
    command -v clang++ >/dev/null || { echo "fuzz.sh: clang++ not found (apt-get install clang)" >&2; exit 1; }
    # No -march=native: the binaries may run on another machine.
    CC=clang CXX=clang++ cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
        -DQUANTLENS_FUZZ=ON -DQUANTLENS_TESTS=OFF -DQUANTLENS_BENCH=OFF -DQUANTLENS_NATIVE=OFF \
        ${prefix:+-DCMAKE_INSTALL_PREFIX="$prefix"} >/dev/null
    cmake --build "$build" -j"${JOBS:-2}" --target "${targets[@]/#/fuzz_}"
    bin=$build/fuzz
    if [[ -n $prefix ]]; then
        for t in "${targets[@]}"; do install -D -m 755 "$bin/fuzz_$t" "$prefix/bin/fuzz_$t"; done
        install -D -m 755 "$0" "$prefix/bin/fuzz.sh"
        mkdir -p "$prefix/share/quantlens/fuzz-corpus"
        cp -r "$src"/fuzz/corpus/. "$prefix/share/quantlens/fuzz-corpus/"
        echo "installed under $prefix; run: $prefix/bin/fuzz.sh --bin $prefix/bin -t SECONDS -j N"
        exit 0
    fi
    out=${out:-$build/fuzz-out}
else
    out=${out:-$PWD/fuzz-out}
fi
if [[ -z $seeds ]]; then
    if [[ -d $bin/../share/quantlens/fuzz-corpus ]]; then seeds=$bin/../share/quantlens/fuzz-corpus
    else seeds=$src/fuzz/corpus; fi
fi
mkdir -p "$out/logs"

run_one() {
    local t=$1 corpus=$out/corpus/$t crashes=$out/crashes/$t
    mkdir -p "$corpus" "$crashes"
    local fork=()
    [[ $workers -gt 1 ]] && fork=(-fork="$workers" -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
    # New inputs go to the first folder only; the seeds are read, never written.
    "$bin/fuzz_$t" "$corpus" "$seeds/$t" "${fork[@]}" -max_total_time="$seconds" \
        -timeout=10 -rss_limit_mb="$mem" -malloc_limit_mb="$mem" -max_len=65536 \
        -artifact_prefix="$crashes/" -print_final_stats=1 >"$out/logs/$t.log" 2>&1 || true
}

echo "fuzzing ${targets[*]}: ${seconds}s each, $parallel at a time, $workers process(es) each; output in $out"
running=0
for t in "${targets[@]}"; do
    if [[ $running -ge $parallel ]]; then wait -n || true; running=$((running - 1)); fi
    run_one "$t" &
    running=$((running + 1))
done
wait

printf '%-12s %12s %8s %8s %8s  %s\n' target runs cov ft crashes "first finding"
status=0
for t in "${targets[@]}"; do
    log=$out/logs/$t.log
    runs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    [[ -n $runs ]] || runs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#' || true)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    found=$(find "$out/crashes/$t" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' \
        -o -name 'oom-*' -o -name 'slow-unit-*' \) | sort)
    n=$(printf '%s' "$found" | grep -c . || true)
    [[ $n -gt 0 ]] && status=1
    printf '%-12s %12s %8s %8s %8s  %s\n' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$n" \
        "$(printf '%s' "$found" | head -1)"
done
exit $status
